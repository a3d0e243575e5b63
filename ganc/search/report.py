"""Search results in the store: the table, the Pareto front, best.json and the plot."""
from __future__ import annotations

from typing import Optional

from ..criteria import criteria, get_criterion
from ..errors import GancError
from ..paretoplot import Panel, Series, figure, png, value_label
from ..results import PARETO, RESULTS, append_results, result_key
from .pareto import pareto_front

PLOT = "search/fid_vs_macs.png"
BEST = "best.json"


COLUMNS = {"method": "string", "budget": "float64", "config": "string", "macs": "int64",
           "params": "int64", "fid": "float64", "kid": "float64", "generation": "int64",
           "trial_id": "string", "wall_s": "float64", "score_s": "float64",
           "attempts": "int64", "status": "string", "error": "string",
           "latency_ms": "float64", "miou": "float64", "pixel_acc": "float64"}
OPTIONAL = ("latency_ms", "miou", "pixel_acc")     # columns only where rows carry them


def _table(rows: list[dict]):
    import pyarrow as pa  # deferred: pyarrow (only where a table is written)
    cols = [c for c in COLUMNS if c not in OPTIONAL]
    cols += [c for c in OPTIONAL if any(c in r for r in rows)]
    return pa.table({c: pa.array([r.get(c) for r in rows], type=getattr(pa, COLUMNS[c])())
                     for c in cols})


def front_of(rows: list[dict], latency_objective: bool = False,
             criterion: str = "fid") -> list[dict]:
    """The Pareto front of the scored (``status`` ok) rows of one search: the criterion
    (FID, or mIoU maximised), MACs and, with ``latency_objective``, the latency."""
    objectives = [criterion, "macs"] + (["latency_ms"] if latency_objective else [])
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    if not get_criterion(criterion).higher_is_better:
        return pareto_front(ok, objectives)
    keyed = [{"i": i, **{o: r.get(o) for o in objectives}} for i, r in enumerate(ok)]
    for k in keyed:                      # pareto_front minimises
        k[criterion] = None if k[criterion] is None else -float(k[criterion])
    return [ok[k["i"]] for k in pareto_front(keyed, objectives)]


def best_of(rows: list[dict], criterion: str = "fid") -> dict:
    """The best scored row by the criterion (ties: fewer MACs, then the config)."""
    if get_criterion(criterion).higher_is_better:
        return max(rows, key=lambda r: (r[criterion], -r["macs"], r["config"]))
    return min(rows, key=lambda r: (r[criterion], r["macs"], r["config"]))


def search_figure(rows: list[dict], front: list[dict], teacher: Optional[dict],
                  budget: Optional[float], best: dict, criterion: str = "fid",
                  split: Optional[str] = None, method: str = ""):
    """The figure of one search: its scored sub-networks, their Pareto front, the best
    and the teacher, all scored on ``split`` (the y axis says which; the MACs and the
    markers as in the report's, see :mod:`ganc.paretoplot`)."""
    y, method = criterion, method or best.get("method") or "evolution"
    series = [Series(f"{method}: scored sub-networks ({len(rows)})",
                     [r["macs"] for r in rows], [r[y] for r in rows], method, color="C0"),
              Series(f"{method}: Pareto front", [r["macs"] for r in front],
                     [r[y] for r in front], method, "front", "C1"),
              Series(f"best {best['config']}", [best["macs"]], [best[y]], "best",
                     "model", "C3")]
    if teacher and teacher.get(y) is not None:
        series.append(Series("teacher", [teacher["macs"]], [teacher[y]], "teacher",
                             "model", "k"))
    panel = Panel(value_label(criterion, split), series, [budget] if budget else [])
    return figure([panel])


def plot_png(rows: list[dict], front: list[dict], teacher: Optional[dict],
             budget: Optional[float], best: dict, criterion: str = "fid",
             split: Optional[str] = None) -> bytes:
    """:func:`search_figure` as PNG bytes."""
    return png(search_figure(rows, front, teacher, budget, best, criterion, split))


def plot_key(index: int) -> str:
    """The plot of the search of budget ``index`` (0: the primary's, at the old name)."""
    return PLOT if index == 0 else PLOT.replace(".png", f"_{index}.png")


def write_results(run, searches: list[dict], teacher: Optional[dict], settings: dict,
                  cost, pool: Optional[dict] = None) -> dict:
    """Write the results table (every search's rows: ``method`` and ``budget`` columns),
    the Pareto table (each budget's front), a plot per budget and best.json (last, so its
    presence means complete). ``searches``: [{method, budget_macs, rows}], primary first.
    best.json's top-level keys describe the primary budget's best; ``budgets`` holds one
    entry per budget; ``pool`` the FID pool's restarts, timeouts, retries and failures."""
    latency = bool(settings.get("latency_objective"))
    criterion = settings.get("criterion") or "fid"
    all_rows, all_fronts, entries = [], [], []
    for i, s in enumerate(searches):
        rows = s["rows"]
        ok = [r for r in rows if r.get("status", "ok") == "ok"]
        front = front_of(rows, latency, criterion)
        best = best_of(ok, criterion)
        run.write_bytes(plot_key(i), png(search_figure(
            ok, front, teacher, s["budget_macs"], best, criterion,
            settings.get("fid_split"), s["method"])))
        entry = {"method": s["method"], "budget_macs": s["budget_macs"],
                 "budget_recipe_macs": s.get("budget_recipe_macs"),
                 "config": best["config"], "macs": best["macs"], "params": best["params"],
                 "fid": best["fid"], "kid": best.get("kid"),
                 "generation": best["generation"], "n_scored": len(ok),
                 "n_failed": len(rows) - len(ok), "n_pareto": len(front),
                 "plot": run.url(plot_key(i))}
        for k in OPTIONAL:
            if k in best:
                entry[k] = best[k]
        entries.append(entry)
        all_rows += rows
        all_fronts += front
    append_results(run, _table(all_rows).to_pylist())   # merged by (method, budget, config)
    run.put_parquet(PARETO, _table(all_fronts))
    primary = entries[0]
    summary = {k: primary[k] for k in ("config", "macs", "params", "fid", "kid",
                                       "generation", "n_scored", "n_failed", "n_pareto")}
    summary["fid_split"] = settings.get("fid_split")   # the split "fid" was scored on
    summary["criterion"] = criterion
    for k in OPTIONAL:
        if k in primary:
            summary[k] = primary[k]
    for c in criteria():                 # the protocol behind a criterion's value
        if c.protocol and c.name in primary:
            summary[f"{c.name}_metric"] = c.protocol
    summary.update({"teacher": teacher, "search": settings, "cost_model": cost.to_dict(),
                    "budgets": entries, "pool": dict(pool or {}),
                    "files": {"results": run.url(RESULTS), "pareto": run.url(PARETO),
                              "plot": run.url(PLOT)}})
    run.put_json(BEST, summary)
    return summary


def best_entry(summary: dict, budget: Optional[float] = None) -> dict:
    """The best.json entry of ``budget`` (MACs at the eval size or as asked at
    ``data.crop_size``, matched to 0.1%; None: the primary); raises GancError naming the
    budgets there are."""
    entries = summary.get("budgets") or [dict(summary, budget_macs=(summary.get("search") or
                                                                    {}).get("budget_macs"))]
    if budget is None:
        return entries[0]
    for e in entries:           # at the eval size, or as asked (at data.crop_size)
        for b in (e.get("budget_macs"), e.get("budget_recipe_macs")):
            if b is not None and abs(float(b) - float(budget)) <= 1e-3 * float(b):
                return e
    have = ", ".join(f"{e['budget_macs']:.4g}" for e in entries if e.get("budget_macs"))
    raise GancError(f"best.json has no search at budget {float(budget):.4g} MACs "
                    f"(budgets: {have or 'none'})")


__all__ = ["write_results", "append_results", "result_key", "front_of", "best_of",
           "best_entry", "plot_key", "plot_png", "search_figure", "RESULTS", "PARETO",
           "PLOT", "BEST"]
