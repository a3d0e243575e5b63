"""One search = one Ray Tune trial: :func:`search_trial` and the searcher it drives.

Design (issue 11): Ray Tune is the experiment layer (restore, resources, results,
TensorBoard), but a trial is a whole search (method x budget x seed), not one
sub-network. The trial asks its searcher for a batch -- a whole generation of the
evolution (generational, as the published recipe: a generation of 100 configs keeps up
to 100 actors busy, and the tail of one search's generation is filled by the searches of
the other budgets that share the pool), or ``population`` proposals of NSGA-II -- scores
the batch through the pool's dispatcher in one call, tells the searcher, and reports a
Tune checkpoint (searcher state + the rows so far) after every batch. A restored trial
starts from its last checkpoint, so nothing recorded there is scored again, and the
experiment state holds one entry per search, not one per config.
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
    done = _restore(searcher)
    limit = max(1, int(settings.population))
    tag = f"b{int(spec['index'])}"
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


def _searcher_of(spec: dict, space: SearchSpace, cost: CostModel, settings, latency,
                 budget_ms: Optional[float], criterion: str):
    """The searcher of one search: its MACs budget (None: none), the latency budget."""
    budget = math.inf if spec["budget"] is None else float(spec["budget"])
    constraint = None if budget_ms is None else LatencyBudget(latency, budget_ms)
    return make_searcher(spec["method"], space, budget, cost, settings,
                         latency=bool(settings.latency_objective), constraint=constraint,
                         criterion=criterion)


def _restore(searcher) -> _Progress:
    """The progress of the newest saved checkpoint, the searcher restored to it (nothing
    done when there is none)."""
    saved = _newest_saved_state()
    if saved is None:
        return _Progress()
    with tempfile.TemporaryDirectory(prefix="ganc-search-") as d:
        with open(os.path.join(d, STATE_FILE), "wb") as f:
            f.write(saved[STATE_FILE])
        searcher.restore(os.path.join(d, STATE_FILE))
    progress = json.loads(saved[PROGRESS_FILE])
    return _Progress(json.loads(saved[ROWS_FILE]), int(progress["serial"]),
                     int(progress["batches"]))


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
            json.dump({"serial": done.serial, "batches": done.batches}, f)
        good = [r["fid"] for r in rows if r["status"] == "ok"]
        good_miou = [r["miou"] for r in rows if r["status"] == "ok" and r.get("miou")
                     is not None]
        ranked = [r[crit.name] for r in rows if r["status"] == "ok"
                  and r.get(crit.name) is not None]
        n_failed = sum(r["status"] != "ok" for r in rows)
        tune.report({"batches": done.batches, "n_scored": len(rows), "n_failed": n_failed,
                     "best_fid": min(good) if good else None,
                     "best_miou": max(good_miou) if good_miou else None,
                     "generation": max(g for _, _, g in batch), "done": finished},
                    checkpoint=tune.Checkpoint.from_directory(d))
    best = (f"best {crit.label} {crit.format(crit.best_of(ranked))}" if ranked
            else "nothing scored yet")
    return n_failed, best


# ---------------------------------------------------------------- restoring a trial
def _saved_state(read) -> Optional[dict]:
    """The three files of a search checkpoint (``read(name) -> bytes``), or None when one
    is missing or unreadable (a checkpoint cut short)."""
    try:
        files = {name: read(name) for name in (STATE_FILE, ROWS_FILE, PROGRESS_FILE)}
        files["batches"] = int(json.loads(files[PROGRESS_FILE])["batches"])
        return files
    except Exception:
        return None


def _newest_saved_state() -> Optional[dict]:
    """The search checkpoint to continue from: the newest complete one among the one Tune
    restored and those in the trial's folder of the store. Tune records a trial's
    checkpoint in its experiment state only every so often, so a driver killed in between
    restores an older one (or none): every config scored since would be scored again."""
    from ray import tune  # deferred: ray.tune
    found = []
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            found.append(_saved_state(lambda n: open(os.path.join(d, n), "rb").read()))
    try:
        import pyarrow.fs as pafs  # deferred: pyarrow
        storage = tune.get_context().get_storage()
        fs, trial = storage.storage_filesystem, storage.trial_fs_path
        infos = fs.get_file_info(pafs.FileSelector(trial, allow_not_found=True))
        folders = [i.path for i in infos if i.type == pafs.FileType.Directory
                   and i.base_name.startswith("checkpoint_")]
    except Exception:       # no storage context (a trainable called outside Tune)
        folders = []
    for folder in folders:
        found.append(_saved_state(
            lambda n, folder=folder: fs.open_input_stream(f"{folder}/{n}").read()))
    found = [f for f in found if f is not None]
    return max(found, key=lambda f: f["batches"]) if found else None


__all__ = ["METHODS", "STATE_FILE", "ROWS_FILE", "PROGRESS_FILE", "criterion_mode",
           "make_searcher", "search_trial"]
