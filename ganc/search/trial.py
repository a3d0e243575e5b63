"""One search = one Ray Tune trial: :func:`search_trial` and the searcher it drives.

Design (issue 11): Ray Tune is the experiment layer (restore, resources, results,
TensorBoard), but a trial is a whole search (method x budget x seed), not one
sub-network. The trial asks its searcher for a batch -- a whole generation of the
evolution (generational, as the published recipe: a generation of 100 configs keeps up
to 100 actors busy, and the tail of one search's generation is filled by the searches of
the other budgets that share the pool), or ``population`` proposals of NSGA-II -- scores
the batch through the pool's dispatcher in one call, tells the searcher, and reports a
Tune checkpoint (searcher state + the rows so far) after every batch. A trial starts from the
newest checkpoint of its search in the experiment's folder (:func:`_newest_saved_state`),
so nothing recorded there is scored again, and the experiment state holds one entry per
search, not one per config.

The store is not trusted (issue 28): a checkpoint is read as JSON only (searcher state,
rows, progress). A searcher state that is not JSON (the pickled NSGA-II state of an older
ganc) is never loaded; the search is rebuilt from its rows (:meth:`replay`) instead.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional

from ..criteria import Criterion, check_criterion, get_criterion
from ..errors import ConfigError
from ..log import say
from ..space import SearchSpace
from ..subnets import SearchError
from .cost import CostModel
from .latency import LatencyBudget

METHODS = ("evolution", "nsga2")
STATE_FILE, ROWS_FILE, PROGRESS_FILE = "searcher.state", "rows.json", "progress.json"


def criterion_mode(criterion: str) -> str:
    """Tune's mode of a search criterion (:attr:`ganc.criteria.Criterion.mode`)."""
    return get_criterion(criterion).mode


# ---------------------------------------------------------------- searchers
def make_searcher(method: str, space: SearchSpace, budget: float, cost: CostModel,
                  settings, latency: bool = False, constraint=None, criterion: str = "fid"):
    """The searcher of ``method``; ``constraint(config) -> bool`` is a further budget
    (the latency budget), ``latency`` adds ``latency_ms`` as an NSGA-II objective;
    ``criterion``: the rows' metric it ranks by (fid minimised, miou maximised)."""
    if method == "evolution":
        from .searcher import EvolutionSearcher  # deferred: ray.tune
        return EvolutionSearcher.from_settings(space, budget, cost, settings,
                                               metric=criterion,
                                               mode=criterion_mode(criterion),
                                               constraint=constraint)
    check_criterion(criterion, method=method)
    if method == "nsga2":
        from .nsga2 import NSGA2Searcher  # deferred: optuna, ray.tune
        objectives = [criterion, "macs"] + (["latency_ms"] if latency else [])
        return NSGA2Searcher(space, budget, cost, objectives=objectives,
                             population=settings.population, generations=settings.generations,
                             mutation_prob=settings.mutation_prob,
                             mutation_ratio=settings.mutation_ratio, seed=settings.seed,
                             constraint=constraint)
    raise ConfigError(f"search.method {method!r} is not one of: {', '.join(METHODS)}")


# ---------------------------------------------------------------- the trial
@dataclass
class _Progress:
    """What a search has done so far: its rows, the next trial serial, the batches."""

    rows: list = field(default_factory=list)
    serial: int = 0
    batches: int = 0
    spec: dict = field(default_factory=dict)   # the search (index, method, budget)
    reported: bool = False                      # a checkpoint reported by this trial


def search_trial(trial_config: dict, client, space: SearchSpace, cost: CostModel, settings,
                 latency=None, budget_ms: Optional[float] = None,
                 model: str = "super") -> None:
    """Tune trainable: one search (``trial_config['search']``: index, method, budget) on
    ``client`` (a :class:`ganc.metrics.pool.PoolClient`, or anything with its ``score``);
    the searcher ranks by ``settings.criterion`` (fid, or miou maximised)."""
    spec = trial_config["search"]
    criterion = getattr(settings, "criterion", "fid")
    crit = get_criterion(criterion)
    searcher = _searcher_of(spec, space, cost, settings, latency, budget_ms, criterion)
    tag = f"b{int(spec['index'])}"
    done = _restore(searcher, spec, tag)
    limit = max(1, int(settings.population))
    while True:
        batch, finished = _next_batch(searcher, done, tag, limit)
        if not batch:
            if finished:
                break
            raise SearchError(f"search {tag}: the searcher waits with nothing to score")
        scores, wall = _score(client, batch, model)
        for row, ok in _rows(spec, batch, scores, wall, cost, latency, crit):
            done.rows.append(row)
            searcher.on_trial_complete(row["trial_id"], row if ok else None, error=not ok)
        done.batches += 1
        n_failed, best = _checkpoint(searcher, done, batch, finished, crit)
        print(f"[search {spec['method']} {tag}] batch {done.batches}: {len(batch)} configs "
              f"in {wall:.0f}s, {len(done.rows)} scored ({n_failed} failed), {best}",
              flush=True)
        if finished:
            break
    if not done.reported:        # restored finished: its rows still make this trial's result
        _checkpoint(searcher, done, [], True, crit)


def _searcher_of(spec: dict, space: SearchSpace, cost: CostModel, settings, latency,
                 budget_ms: Optional[float], criterion: str):
    """The searcher of one search: its MACs budget (None: none), the latency budget."""
    budget = math.inf if spec["budget"] is None else float(spec["budget"])
    constraint = None if budget_ms is None else LatencyBudget(latency, budget_ms)
    return make_searcher(spec["method"], space, budget, cost, settings,
                         latency=bool(settings.latency_objective), constraint=constraint,
                         criterion=criterion)


def _restore(searcher, spec: dict, tag: str) -> _Progress:
    """The progress of the newest saved checkpoint of the search ``spec``, the searcher
    restored to it (nothing done when there is none). Only JSON is read: a searcher
    state that is not JSON is never loaded; the searcher is rebuilt from the rows."""
    saved = _newest_saved_state(spec)
    if saved is None:
        return _Progress(spec=dict(spec))
    rows, progress = saved["rows"], saved["progress"]
    try:
        searcher.set_state(json.loads(saved[STATE_FILE].decode("utf-8")))
    except (ValueError, KeyError, TypeError, IndexError) as e:
        if not hasattr(searcher, "replay"):
            raise SearchError(f"search {tag}: the searcher state in {saved['where']} is not "
                              f"one ganc wrote ({str(e)[:80]}); not loaded: rerun with "
                              "--fresh") from None
        searcher.replay(rows)
        say(f"[search] {tag}: the searcher state in {saved['where']} is not JSON ganc "
            f"wrote (an older ganc's pickle?): not loaded; rebuilt from its {len(rows)} "
            "recorded rows")
    say(f"[search] {tag}: resuming from batch {int(progress['batches'])} "
        f"({len(rows)} configs recorded)")
    return _Progress(rows, int(progress["serial"]), int(progress["batches"]), dict(spec))


def _next_batch(searcher, done: _Progress, tag: str, limit: int) -> tuple[list, bool]:
    """Up to ``limit`` suggestions as (trial id, config, generation), and whether the
    searcher has finished."""
    from ray.tune.search import Searcher  # deferred: ray.tune
    batch = []
    while len(batch) < limit:
        tid = f"{tag}-{done.serial}"
        done.serial += 1
        s = searcher.suggest(tid)
        if s is None:
            break
        if s == Searcher.FINISHED:
            return batch, True
        batch.append((tid, s["config"], int(s.get("generation", -1))))
    return batch, False


def _score(client, batch: list, model: str) -> tuple[list, float]:
    """The pool's scores of ``batch`` (one call, failures recorded) and its wall time."""
    from ..metrics.pool import SubnetSpec  # deferred: torch_fidelity, torchvision
    t0 = time.time()
    scores = client.score([SubnetSpec(model, c, tag=t) for t, c, _ in batch], kid=False,
                          failures="record")
    return scores, time.time() - t0


def _rows(spec: dict, batch: list, scores: list, wall: float, cost: CostModel, latency,
          crit: Criterion) -> list[tuple[dict, bool]]:
    """(row, scored) of each config of a scored batch; a score without the criterion's
    value is a failure."""
    out = []
    for (tid, c, gen), sc in zip(batch, scores):
        ok, error = sc.status == "ok", sc.error or None
        if ok and getattr(sc, crit.score_field) is None:
            ok, error = False, f"scored without an {crit.title}"
        row = {"method": spec["method"], "budget": spec["budget"], "config": c,
               "macs": cost.macs(c), "params": cost.params(c),
               "fid": float(sc.fid) if ok else None, "kid": None, "generation": gen,
               "miou": sc.miou if ok else None, "pixel_acc": sc.pixel_acc if ok else None,
               "trial_id": tid, "wall_s": wall / len(batch),
               "score_s": float(sc.seconds), "attempts": int(sc.attempts),
               "status": "ok" if ok else "failed", "error": error}
        if latency is not None:
            row["latency_ms"] = float(latency.predict(c))
        out.append((row, ok))
    return out


def _checkpoint(searcher, done: _Progress, batch: list, finished: bool,
                crit: Criterion) -> tuple[int, str]:
    """Report the batch to Tune with a checkpoint (searcher state, rows, progress);
    returns the failures so far and the best score, as logged."""
    from ray import tune  # deferred: ray.tune
    rows = done.rows
    with tempfile.TemporaryDirectory(prefix="ganc-search-") as d:
        searcher.save(os.path.join(d, STATE_FILE))
        with open(os.path.join(d, ROWS_FILE), "w") as f:
            json.dump(rows, f)
        with open(os.path.join(d, PROGRESS_FILE), "w") as f:
            json.dump({"serial": done.serial, "batches": done.batches,
                       "search": done.spec}, f)
        good = [r["fid"] for r in rows if r["status"] == "ok"]
        good_miou = [r["miou"] for r in rows if r["status"] == "ok" and r.get("miou")
                     is not None]
        ranked = [r[crit.name] for r in rows if r["status"] == "ok"
                  and r.get(crit.name) is not None]
        n_failed = sum(r["status"] != "ok" for r in rows)
        tune.report({"batches": done.batches, "n_scored": len(rows), "n_failed": n_failed,
                     "best_fid": min(good) if good else None,
                     "best_miou": max(good_miou) if good_miou else None,
                     "generation": max([g for _, _, g in batch]
                                       + [r.get("generation", -1) for r in rows] + [-1]),
                     "done": finished},
                    checkpoint=tune.Checkpoint.from_directory(d))
    done.reported = True
    best = (f"best {crit.label} {crit.format(crit.best_of(ranked))}" if ranked
            else "nothing scored yet")
    return n_failed, best


# ---------------------------------------------------------------- restoring a trial
def _saved_state(read, where: str) -> Optional[dict]:
    """The three files of a search checkpoint (``read(name) -> bytes``), the rows and the
    progress parsed as JSON (the searcher state left as bytes), or None when one is
    missing or unreadable (a checkpoint cut short)."""
    try:
        files = {name: read(name) for name in (STATE_FILE, ROWS_FILE, PROGRESS_FILE)}
        files["rows"] = json.loads(files[ROWS_FILE])
        files["progress"] = json.loads(files[PROGRESS_FILE])
        files["batches"] = int(files["progress"]["batches"])
        files["where"] = where
        return files if isinstance(files["rows"], list) else None
    except Exception:
        return None


def _search_of(saved: dict) -> Optional[dict]:
    """The search (index, method, budget) a checkpoint belongs to: recorded in its
    progress, or (a checkpoint of an older ganc) read from its first row."""
    recorded = saved["progress"].get("search")
    if recorded is None and saved["rows"]:
        row = saved["rows"][0]
        recorded = {"index": int(str(row["trial_id"]).split("-")[0][1:]),
                    "method": row["method"], "budget": row["budget"]}
    if not isinstance(recorded, dict):
        return None
    return {k: recorded.get(k) for k in ("index", "method", "budget")}


def _same_search(saved: dict, spec: dict) -> bool:
    try:
        return _search_of(saved) == {k: spec.get(k) for k in ("index", "method", "budget")}
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def checkpoint_folders(fs, experiment: str) -> list[str]:
    """The ``checkpoint_*`` folders of every trial folder in the experiment folder
    ``experiment`` of the pyarrow filesystem ``fs`` (none when it does not exist)."""
    import pyarrow.fs as pafs  # deferred: pyarrow
    out = []
    for trial in fs.get_file_info(pafs.FileSelector(experiment, allow_not_found=True)):
        if trial.type != pafs.FileType.Directory:
            continue
        out += [i.path for i in fs.get_file_info(pafs.FileSelector(trial.path))
                if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")]
    return out


def _newest_saved_state(spec: dict) -> Optional[dict]:
    """The checkpoint of the search ``spec`` to continue from: the newest complete one
    among the one Tune restored (a retried trial) and those of every trial folder of the
    experiment (an earlier job's trials: the search is resumed with a new Tuner, never
    ``Tuner.restore``, which unpickles the store's tuner.pkl and experiment state).
    Tune records a trial's checkpoint in its experiment state only every so often, so
    the folders hold newer ones than the state names."""
    from ray import tune  # deferred: ray.tune
    found = []
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            found.append(_saved_state(lambda n: open(os.path.join(d, n), "rb").read(), d))
    try:
        storage = tune.get_context().get_storage()
        fs = storage.storage_filesystem
        folders = checkpoint_folders(fs, storage.experiment_fs_path)
    except Exception:       # no storage context (a trainable called outside Tune)
        folders = []
    for folder in folders:
        found.append(_saved_state(
            lambda n, folder=folder: fs.open_input_stream(f"{folder}/{n}").read(), folder))
    found = [f for f in found if f is not None and _same_search(f, spec)]
    return max(found, key=lambda f: f["batches"]) if found else None


__all__ = ["METHODS", "STATE_FILE", "ROWS_FILE", "PROGRESS_FILE", "criterion_mode",
           "make_searcher", "search_trial", "checkpoint_folders"]
