"""The search's Ray Tune experiment: one trial per budget, made in one place.

:func:`fit_searches` runs the trials of :func:`searches_of` side by side (each
:func:`ganc.search.trial.search_trial`) in ``<storage>/tune``. An unfinished experiment
is resumed with a new Tuner in the same folder, whose trials continue from the newest
checkpoint of their search there (:func:`ganc.search.trial._newest_saved_state`: JSON
only); never with ``Tuner.restore``, which unpickles ``tuner.pkl`` and the experiment
state from the store, so that whoever can write the store could run code on the cluster
(issue 28). :func:`check_resuming` checks first that it is resumed only under the inputs
it started with; :func:`collect_searches` reads each trial's rows back from its last
checkpoint.
"""
from __future__ import annotations

import json
import math
import os
from typing import Optional

from ..context import keep_pickles_out_of_tune
from ..resume import check_resume, resume_inputs
from ..subnets import SearchError
from .trial import ROWS_FILE, checkpoint_folders, search_trial

EXPERIMENT = "tune"
RESUME_HINT = ("rerun it with --fresh (ganc search), --restart-from search (ganc "
               "compress) or use a new --run-id")


def _trial_resources():
    """A search trial only waits on the FID pool: no CPU (the pool's actors hold the CPUs),
    so one trial per budget always fits beside the pool."""
    from ray import tune  # deferred: ray.tune
    return tune.PlacementGroupFactory([{"CPU": 0, "memory": 1 << 20}])


def searches_of(method: str, budgets: list[float]) -> list[dict]:
    """One search per budget (the first is the primary); ``inf`` (a latency budget alone)
    is recorded as None."""
    return [{"index": i, "method": method, "budget": b if math.isfinite(b) else None}
            for i, b in enumerate(budgets)]


def trainable_of(client, space, cost, settings, latency=None,
                 budget_ms: Optional[float] = None):
    """:func:`search_trial` bound to the pool's ``client`` and the search's inputs, with
    a trial's resources."""
    from ray import tune  # deferred: ray.tune
    return tune.with_resources(
        tune.with_parameters(search_trial, client=client, space=space, cost=cost,
                             settings=settings, latency=latency, budget_ms=budget_ms),
        _trial_resources())


def _pyarrow_fs(fs):
    """The pyarrow filesystem of a Tune storage (None: the local one)."""
    if fs is not None:
        return fs
    import pyarrow.fs as pafs  # deferred: pyarrow
    return pafs.LocalFileSystem()


def saved_searches(storage_path: str, fs=None) -> int:
    """How many search checkpoints an earlier job left in ``<storage>/tune`` (0: nothing
    to resume). Reads folder listings only."""
    return len(checkpoint_folders(_pyarrow_fs(fs), f"{storage_path.rstrip('/')}/{EXPERIMENT}"))


def check_resuming(run, cfg, fingerprint: dict, storage_path: str, fs=None,
                   fresh: bool = False) -> bool:
    """Whether the run's unfinished experiment is to be resumed (not ``fresh`` and a
    search checkpoint is there); it is resumed only under what it started with
    (``fingerprint``: the search's inputs; one line otherwise)."""
    resuming = not fresh and saved_searches(storage_path, fs) > 0
    check_resume(run, "search", resume_inputs(cfg, "search", **fingerprint), resuming,
                 RESUME_HINT)
    return resuming


def fit_searches(trainable, searches: list[dict], storage_path: str, fs=None,
                 fresh: bool = False):
    """Run one trial per search of ``searches`` side by side, each continuing from its
    search's newest checkpoint in the experiment folder unless ``fresh`` (then the
    folder is emptied first); returns (ResultGrid, resumed). The one place the search's
    Tune experiment is made (the stage, the benches and the tests use it)."""
    from ray import tune  # deferred: ray.tune
    exp_path = f"{storage_path.rstrip('/')}/{EXPERIMENT}"
    resumed = not fresh and saved_searches(storage_path, fs) > 0
    if not resumed:
        _clear(exp_path, fs)
    keep_pickles_out_of_tune()
    tuner = tune.Tuner(
        trainable, param_space={"search": tune.grid_search(list(searches))},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=len(searches),
                                    reuse_actors=False),
        run_config=tune.RunConfig(
            name=EXPERIMENT, storage_path=storage_path, storage_filesystem=fs, verbose=0,
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
    return tuner.fit(), resumed


def _clear(exp_path: str, fs=None) -> None:
    """Remove an earlier experiment's folder (a fresh search: its checkpoints must not be
    taken for this one's)."""
    import pyarrow.fs as pafs  # deferred: pyarrow
    fs = _pyarrow_fs(fs)
    if fs.get_file_info(exp_path).type == pafs.FileType.Directory:
        fs.delete_dir(exp_path)


def rows_of(result) -> list[dict]:
    """The rows a search trial recorded (its last checkpoint)."""
    if result.checkpoint is None:
        return []
    with result.checkpoint.as_directory() as d:
        with open(os.path.join(d, ROWS_FILE)) as f:
            return json.load(f)


def collect_searches(results, run, method: str, budgets: list[float],
                     asked: list[float]) -> list[dict]:
    """One search per budget (method, budget at the eval and the recipe's size, rows) from
    the experiment's results; a failed trial, or a budget with no config scored, is a
    :class:`SearchError` naming the run."""
    by_index = {}
    for r in results:
        if r.error is not None:
            raise SearchError(f"search of {run.url()} failed: "
                              f"{str(r.error).strip().splitlines()[-1][:200]}")
        by_index[int(r.config["search"]["index"])] = rows_of(r)
    searches = []
    for i, b in enumerate(budgets):
        rows = by_index.get(i) or []
        if not any(r["status"] == "ok" for r in rows):
            first = next((r["error"] for r in rows if r.get("error")), None)
            raise SearchError(f"search of {run.url()} (budget {b:.4g}) scored no config"
                              + (f": {first}" if first else ""))
        searches.append({"method": method, "budget_macs": b if math.isfinite(b) else None,
                         "budget_recipe_macs": asked[i] or None, "rows": rows})
    return searches


__all__ = ["EXPERIMENT", "searches_of", "trainable_of", "check_resuming", "fit_searches",
           "saved_searches", "rows_of", "collect_searches"]
