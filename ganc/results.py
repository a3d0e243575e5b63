"""The results table every method writes and the fine-tune's keep-or-drop rule.

Below the stages: the search (:mod:`ganc.search.report`), its fine-tune
(:mod:`ganc.search.finetune`) and the prune stage (:mod:`ganc.prune.driver`) all merge
their rows into one table, ``search/results.parquet`` (:func:`append_results`, keyed by
:func:`result_key`), and keep fine-tuned weights only when they score better
(:func:`choose_export`).
"""
from __future__ import annotations

import math
from typing import Optional

from .criteria import get_criterion

RESULTS = "search/results.parquet"
PARETO = "search/pareto.parquet"   # the Pareto front of each search (method, budget)
LEGACY_METHOD = "evolution"    # rows of tables written before rows carried their method


def result_key(row: dict) -> tuple:
    """What makes a result row unique: (method, budget or target, config), and a pruning
    row's folder (``prefix``, :func:`ganc.prune.artifacts.export_prefix`: its variant). A
    search row's budget is its MACs budget (None: a latency budget alone); a pruning row's
    is its target ratio."""
    budget = row.get("budget")
    if budget is None:
        budget = row.get("target")
    prefix = row.get("prefix")   # a pruned model's folder: its variant (-nolds, -tag...)
    return (row.get("method") or LEGACY_METHOD, None if budget is None else float(budget),
            str(row.get("config"))) + ((prefix,) if isinstance(prefix, str) else ())


def append_results(run, rows: list[dict], key=result_key) -> str:
    """Merge ``rows`` into ``search/results.parquet``: a row replaces the stored row with
    the same ``key`` (in place), new keys are appended, every other row is kept. Running
    it again with the same rows (a re-run, a retry after a crash) leaves the same table.
    Each row keeps its own ``method`` (evolution, nsga2, prune-lds); columns are the union
    of all rows' (missing values null). Written atomically (temporary key, then commit)."""
    import pyarrow as pa  # deferred: pyarrow
    merged: dict = {}
    if run.exists(RESULTS):
        for r in run.get_parquet(RESULTS).to_pylist():
            r["method"] = r.get("method") or LEGACY_METHOD
            merged[key(r)] = r
    for r in rows:
        merged[key(r)] = dict(r)
    out = list(merged.values())
    columns = list(dict.fromkeys(c for r in out for c in r))
    return run.put_parquet(RESULTS, pa.table({c: [r.get(c) for r in out] for c in columns}))


def choose_export(fid_before: Optional[float], fid_after: Optional[float],
                  criterion: str = "fid") -> tuple[str, str]:
    """``("after" | "before", why)``: the fine-tuned weights only when they score better
    than the supernet's slice by the criterion (a lower FID; with ``criterion="miou"`` the
    two values are mIoUs and higher wins); a missing or NaN score never wins."""
    def ok(v):
        return isinstance(v, (int, float)) and math.isfinite(v)
    crit = get_criterion(criterion)
    name, verb = crit.title, crit.verb
    better = False
    if ok(fid_after) and ok(fid_before):
        better = crit.better(fid_after, fid_before)
    if ok(fid_after) and (not ok(fid_before) or better):
        return "after", (f"fine-tuned {name} {fid_after:.2f} {crit.symbol} {fid_before:.2f} "
                         "before" if ok(fid_before) else "only the fine-tuned weights scored")
    if ok(fid_before):
        return "before", (f"fine-tuning did not {verb} {name} ({fid_before:.2f} before, "
                          f"{fid_after:.2f} after)" if ok(fid_after) else
                          "the fine-tuned weights did not score")
    return "before", "neither scored: the searched weights are kept"


__all__ = ["RESULTS", "PARETO", "LEGACY_METHOD", "result_key", "append_results", "choose_export"]
