"""The search stage: Ray Tune trials scoring sub-networks through the FID actor pool.

    run_search(cfg, store) -> summary dict

reads ``runs/<id>/supernet/final.pt``, checks the MACs budget (default: a tenth of the
teacher's MACs at the eval resolution ``data.crop_size``; none when only a latency
budget ``search.budget_ms`` is set, checked with the latency table of
:mod:`ganc.search.latency`, loaded from or built into the store), starts the FID pool (supernet
weights put into the Ray object store once), scores the teacher, runs the searcher
(``search.method``: ``evolution`` or ``nsga2``) with ``max_concurrent_trials`` equal to
the pool's size, and writes under ``runs/<id>/search/``: ``results.parquet``,
``pareto.parquet``, ``fid_vs_macs.png``, and ``runs/<id>/best.json``. The Tune experiment
lives in ``runs/<id>/search/tune``; running the stage again on an unfinished experiment
resumes it with ``Tuner.restore`` (the searcher state comes back with it).
"""
from __future__ import annotations

import math
import time
from typing import Optional

from ..config import RunConfig
from ..errors import ConfigError, GancError
from ..space import SearchSpace
from .cost import CostModel, check_budget
from .latency import LatencyBudget, check_budget_ms, check_latency_budget
from .report import write_results

METHODS = ("evolution", "nsga2")


def _trial_resources():
    """A trial only waits on the FID pool: no CPU (the pool's actors hold the CPUs), so
    ``max_concurrent_trials`` trials always fit beside the pool."""
    from ray import tune
    return tune.PlacementGroupFactory([{"CPU": 0, "memory": 1 << 20}])
EXPERIMENT = "tune"


class SearchError(GancError):
    """A search that cannot start or did not produce results."""


# ---------------------------------------------------------------- inputs
def supernet_of(payload: dict):
    """The supernet a checkpoint payload (``supernet/final.pt``, ``finetune/final.pt``)
    describes, with its weights loaded strictly, in eval mode."""
    from .. import nn as gnn
    model = gnn.build(payload["netG"], ngf=int(payload["ngf"]),
                      norm=payload.get("norm", "instance"),
                      dropout=float(payload.get("dropout", 0.0)),
                      input_nc=int(payload.get("input_nc", 3)),
                      output_nc=int(payload.get("output_nc", 3)))
    model.load_state_dict(payload["state_dict"], strict=True)
    return model.eval()


def load_supernet(run) -> dict:
    """The supernet payload (``supernet/final.pt``) with ``model`` and ``space`` added."""
    key = "supernet/final.pt"
    if not run.exists(key):
        raise SearchError(f"no supernet checkpoint at {run.url(key)}; "
                          "train one first (ganc train-supernet)")
    payload = run.get_torch(key)
    for field in ("state_dict", "netG", "ngf", "search_space"):
        if field not in payload:
            raise SearchError(f"{run.url(key)} has no {field!r} entry")
    payload["model"] = supernet_of(payload)
    payload["space"] = SearchSpace.from_dict(payload["search_space"])
    return payload


def cost_model(payload: dict, size: int) -> CostModel:
    return CostModel(size=int(size), input_nc=int(payload.get("input_nc", 3)),
                     output_nc=int(payload.get("output_nc", 3)),
                     norm=payload.get("norm", "instance"))


def eval_split_of(cfg: RunConfig, ctx):
    """The FID pool's split: the search split held out of the training data
    (``data.search_split``), else the eval split, read from the run's dataset on this node
    (``ctx``: the run's :class:`ganc.context.RunContext`). Val / test are otherwise read
    only by the report."""
    from ..data.splits import scoring_split
    return scoring_split(cfg, ctx.data_root(), name=ctx.data.name)


# ---------------------------------------------------------------- trials
class PoolLease:
    """What a Tune trial needs to score one config on the FID pool: the actor handles,
    the ObjectRef of the supernet's weights (put once) and a queue of free actors, so
    concurrent trials never wait behind each other on one actor."""

    def __init__(self, pool, model_name: str):
        from ray.util.queue import Queue
        self.actors = list(pool.actors)
        self.entry = pool._entries[model_name]
        self.model = model_name
        self.free = Queue(maxsize=len(self.actors), actor_options={"num_cpus": 0})
        for i in range(len(self.actors)):
            self.free.put(i)

    def score(self, config: str) -> dict:
        import ray
        from ..metrics.pool import SubnetSpec
        i = self.free.get(block=True)
        try:
            return ray.get(self.actors[i].score.remote(SubnetSpec(self.model, config),
                                                       [self.entry]))
        finally:
            self.free.put(i)

    def close(self):
        try:
            self.free.shutdown(force=True)
        except Exception:
            pass


def score_trial(trial_config: dict, lease: PoolLease, cost: CostModel,
                latency=None) -> None:
    """Tune trainable: score one channel config through the pool and report it (with the
    latency table's prediction as ``latency_ms`` when ``latency`` is a table)."""
    from ray import tune
    cfg = trial_config["config"]
    t0 = time.time()
    res = lease.score(cfg)
    out = {"config_str": cfg, "macs": cost.macs(cfg), "params": cost.params(cfg),
           "fid": float(res["fid"]),
           "kid": None if res.get("kid_mean") is None else float(res["kid_mean"]),
           "generation": int(trial_config.get("generation", -1)),
           "score_s": float(res.get("seconds", 0.0))}
    if latency is not None:
        out["latency_ms"] = float(latency.predict(cfg))
    out["wall_s"] = time.time() - t0
    tune.report(out)


def latency_table_for(cfg: RunConfig, root, space: SearchSpace, cost: CostModel):
    """(table, key) of ``search.latency_runtime`` / ``latency_threads`` at the eval size:
    from the store's ``latency/`` cache, else measured on this machine and cached."""
    from ..runtime import check_runtime, check_threads
    from .latency import load_or_build
    sc = cfg.search
    check_runtime(sc.latency_runtime, "search.latency_runtime")
    check_threads(sc.latency_threads, "search.latency_threads")
    return load_or_build(root, space, cost.size, runtime=sc.latency_runtime,
                         threads=int(sc.latency_threads), input_nc=cost.input_nc,
                         output_nc=cost.output_nc, norm=cost.norm,
                         device=sc.latency_device or None, log=print)


# ---------------------------------------------------------------- searchers
def make_searcher(method: str, space: SearchSpace, budget: float, cost: CostModel,
                  settings, latency: bool = False, constraint=None):
    """The searcher of ``method``; ``constraint(config) -> bool`` is a further budget
    (the latency budget), ``latency`` adds ``latency_ms`` as an NSGA-II objective."""
    if method == "evolution":
        from .searcher import EvolutionSearcher
        return EvolutionSearcher.from_settings(space, budget, cost, settings,
                                               constraint=constraint)
    if method == "nsga2":
        from .nsga2 import NSGA2Searcher
        objectives = ["fid", "macs"] + (["latency_ms"] if latency else [])
        return NSGA2Searcher(space, budget, cost, objectives=objectives,
                             population=settings.population, generations=settings.generations,
                             mutation_prob=settings.mutation_prob,
                             mutation_ratio=settings.mutation_ratio, seed=settings.seed,
                             constraint=constraint)
    raise ConfigError(f"search.method {method!r} is not one of: {', '.join(METHODS)}")


def rows_of(results) -> list[dict]:
    """One row per scored config from a Tune ResultGrid."""
    rows = []
    for r in results:
        m = r.metrics or {}
        if r.error is not None or m.get("fid") is None:
            continue
        row = {"config": m["config_str"], "macs": int(m["macs"]), "params": int(m["params"]),
               "fid": float(m["fid"]), "kid": m.get("kid"),
               "generation": int(m.get("generation", -1)),
               "trial_id": str(m.get("trial_id", "")), "wall_s": float(m.get("wall_s", 0.0))}
        if "latency_ms" in m:
            row["latency_ms"] = float(m["latency_ms"])
        rows.append(row)
    rows.sort(key=lambda r: (r["generation"], r["trial_id"]))
    return rows


# ---------------------------------------------------------------- the stage
def run_search(cfg: RunConfig, store=None, *, method: Optional[str] = None,
               budget_macs: Optional[float] = None, budget_ms: Optional[float] = None,
               fresh: bool = False) -> dict:
    """Run (or resume) the search of a run; returns the summary written to best.json."""
    from ..context import stage_context
    with stage_context(cfg, store) as ctx:
        return _search(ctx, method=method, budget_macs=budget_macs, budget_ms=budget_ms,
                       fresh=fresh)


def _search(ctx, *, method: Optional[str], budget_macs: Optional[float],
            budget_ms: Optional[float], fresh: bool) -> dict:
    from ..data.splits import choice_split
    from ..placement import search_budget
    from ..profile import count_macs, count_params
    from ..context import keep_credentials_out_of_tune, ray_storage
    from ..train.supernet import load_teacher

    cfg, root, run = ctx.cfg, ctx.root, ctx.run
    sc = cfg.search
    method = method or sc.method
    if method not in METHODS:
        raise ConfigError(f"search.method {method!r} is not one of: {', '.join(METHODS)}")
    budget_ms = sc.budget_ms if budget_ms is None else budget_ms
    if budget_ms is not None:
        budget_ms = check_budget_ms(budget_ms)
    sup = load_supernet(run)
    space: SearchSpace = sup["space"]
    size = int(cfg.data.crop_size)              # the placement's eval size
    cost = cost_model(sup, size)
    teacher_ref = sup.get("teacher")
    teacher = load_teacher(teacher_ref, ctx.endpoint_url) if teacher_ref else None
    shape = (1, cost.input_nc, size, size)
    teacher_macs = count_macs(teacher, shape) if teacher is not None else None
    # --budget-macs and search.budget_macs are MACs at data.crop_size (the recipe's size)
    raw_budget = float(budget_macs or sc.budget_macs or 0)
    if raw_budget <= 0 and budget_ms is not None:
        budget = math.inf                      # a latency budget alone
    else:
        budget = search_budget(ctx.placement, raw_budget, teacher_macs)
    check_budget(space, budget, cost)          # one line, before anything starts
    latency = bool(sc.latency_objective)
    table = table_key = constraint = None
    if budget_ms is not None or latency:
        table, table_key = latency_table_for(cfg, root, space, cost)
    if budget_ms is not None:
        check_latency_budget(space, budget_ms, table)
        constraint = LatencyBudget(table, budget_ms)

    from ray import tune
    from ..metrics.pool import FidPool, SubnetSpec
    pool = lease = None
    try:
        pool = FidPool(eval_split_of(cfg, ctx), num_actors=cfg.fid.num_actors, store=root,
                       fid=cfg.fid, use_gpu=ctx.use_gpu, gpus=ctx.placement.get("gpus"),
                       resources=ctx.resources, wait_s=cfg.scale.wait_s)
        m = sup["model"]
        pool.register_model("super", arch=sup["netG"], state=m.state_dict(),
                            ngf=int(sup["ngf"]), norm=sup.get("norm", "instance"),
                            dropout=float(sup.get("dropout", 0.0)),
                            input_nc=cost.input_nc, output_nc=cost.output_nc)
        teacher_info = None
        if teacher is not None:
            if run.exists("search/teacher.json"):
                teacher_info = run.get_json("search/teacher.json")
            else:
                pool.register_model("teacher", teacher)
                ts = pool.score([SubnetSpec("teacher")])[0]
                teacher_info = {"netG": teacher_ref.get("netG"), "ngf": teacher_ref.get("ngf"),
                                "source": teacher_ref.get("source"), "macs": teacher_macs,
                                "params": count_params(teacher), "fid": ts.fid,
                                "kid": ts.kid_mean}
                run.put_json("search/teacher.json", teacher_info)
        lease = PoolLease(pool, "super")
        trainable = tune.with_resources(
            tune.with_parameters(score_trial, lease=lease, cost=cost, latency=table),
            _trial_resources())
        storage_path, fs = ray_storage(run, "search")
        keep_credentials_out_of_tune()
        exp_path = f"{storage_path.rstrip('/')}/{EXPERIMENT}"
        max_conc = int(sc.max_concurrent) or pool.num_actors
        t0 = time.time()
        if not fresh and tune.Tuner.can_restore(exp_path, storage_filesystem=fs):
            tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True,
                                       resume_errored=True, storage_filesystem=fs)
            resumed = True
        else:
            searcher = make_searcher(method, space, budget, cost, sc, latency, constraint)
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(search_alg=searcher,
                                            num_samples=sc.population * sc.generations,
                                            max_concurrent_trials=max_conc, reuse_actors=True),
                run_config=tune.RunConfig(name=EXPERIMENT, storage_path=storage_path,
                                          storage_filesystem=fs, verbose=0,
                                          failure_config=tune.FailureConfig(max_failures=1)))
            resumed = False
        results = tuner.fit()
        rows = rows_of(results)
        if not rows:
            first = next((r.error for r in results if r.error is not None), None)
            raise SearchError(f"search of {run.url()} scored no config"
                              + (f": {str(first).strip().splitlines()[-1][:200]}"
                                 if first else ""))
        settings = {"method": method,
                    "budget_macs": budget if math.isfinite(budget) else None,
                    "budget_ms": budget_ms, "population": sc.population,
                    "parent_ratio": sc.parent_ratio, "mutation_prob": sc.mutation_prob,
                    "mutation_ratio": sc.mutation_ratio, "generations": sc.generations,
                    "weighted_sample": sc.weighted_sample,
                    "seed": sc.seed, "latency_objective": latency,
                    "latency_table": None if table is None else {
                        **table.describe(), "key": table_key},
                    "max_concurrent_trials": max_conc, "fid_actors": pool.num_actors,
                    "eval_size": size, "macs_convention": "torchprofile",
                    "fid_split": choice_split(cfg.data),
                    "budget_rule": ("--budget-macs / search.budget_macs at "
                                    f"{ctx.placement['recipe_size']}px"
                                    if (budget_macs or sc.budget_macs) else
                                    f"a tenth of the teacher's MACs at {size}px"),
                    "space": space.to_dict(), "resumed": resumed,
                    "wall_s": time.time() - t0}
        return write_results(run, rows, teacher_info, settings, cost)
    finally:
        if lease is not None:
            lease.close()
        if pool is not None:
            pool.close()


__all__ = ["run_search", "load_supernet", "PoolLease", "score_trial", "make_searcher",
           "rows_of", "SearchError", "METHODS"]
