"""Search results in the store: the table, the Pareto front, best.json and the plot."""
from __future__ import annotations

import io
from typing import Optional

from .pareto import pareto_front

RESULTS = "search/results.parquet"
PARETO = "search/pareto.parquet"
PLOT = "search/fid_vs_macs.png"
BEST = "best.json"


def _table(rows: list[dict]):
    import pyarrow as pa
    cols = ["config", "macs", "params", "fid", "kid", "generation", "trial_id", "wall_s"]
    if any("latency_ms" in r for r in rows):
        cols.append("latency_ms")
    types = {"config": pa.string(), "macs": pa.int64(), "params": pa.int64(),
             "fid": pa.float64(), "kid": pa.float64(), "generation": pa.int64(),
             "trial_id": pa.string(), "wall_s": pa.float64(), "latency_ms": pa.float64()}
    return pa.table({c: pa.array([r.get(c) for r in rows], type=types[c]) for c in cols})


def plot_png(rows: list[dict], front: list[dict], teacher: Optional[dict],
             budget: Optional[float], best: dict) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    ax.scatter([r["macs"] / 1e9 for r in rows], [r["fid"] for r in rows], s=12, alpha=0.5,
               label=f"scored sub-networks ({len(rows)})")
    ax.plot([r["macs"] / 1e9 for r in sorted(front, key=lambda r: r["macs"])],
            [r["fid"] for r in sorted(front, key=lambda r: r["macs"])], "o-", color="C1",
            ms=4, label="Pareto front")
    ax.scatter([best["macs"] / 1e9], [best["fid"]], marker="*", s=160, color="C3",
               label=f"best {best['config']}", zorder=5)
    if teacher and teacher.get("fid") is not None:
        ax.scatter([teacher["macs"] / 1e9], [teacher["fid"]], marker="s", s=60, color="k",
                   label="teacher", zorder=5)
        ax.set_xscale("log")
    if budget:                        # None: a latency budget alone
        ax.axvline(budget / 1e9, color="gray", ls="--", lw=1, label="MACs budget")
    ax.set_xlabel("GMACs (torchprofile convention)")
    ax.set_ylabel("FID (lower is better)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_results(run, rows: list[dict], teacher: Optional[dict], settings: dict,
                  cost) -> dict:
    """Write results, front, plot and best.json (last, so its presence means complete)."""
    objectives = ["fid", "macs"] + (["latency_ms"] if settings.get("latency_objective")
                                    else [])
    front = pareto_front(rows, objectives)
    best = min(rows, key=lambda r: (r["fid"], r["macs"], r["config"]))
    run.put_parquet(RESULTS, _table(rows))
    run.put_parquet(PARETO, _table(front))
    run.write_bytes(PLOT, plot_png(rows, front, teacher, settings["budget_macs"], best))
    summary = {"config": best["config"], "macs": best["macs"], "params": best["params"],
               "fid": best["fid"], "kid": best.get("kid"), "generation": best["generation"],
               "fid_split": settings.get("fid_split"),   # the split "fid" was scored on
               "teacher": teacher, "search": settings, "n_scored": len(rows),
               "n_pareto": len(front), "cost_model": cost.to_dict(),
               "files": {"results": run.url(RESULTS), "pareto": run.url(PARETO),
                         "plot": run.url(PLOT)}}
    if "latency_ms" in best:
        summary["latency_ms"] = best["latency_ms"]
    run.put_json(BEST, summary)
    return summary


__all__ = ["write_results", "plot_png", "RESULTS", "PARETO", "PLOT", "BEST"]
