"""The search stage: one Ray Tune trial per search, scoring batches through the FID pool.

    run_search(cfg, store) -> summary dict

reads ``runs/<id>/supernet/final.pt``, checks every MACs budget (``search.budgets``, else
``search.budget_macs``, default a tenth of the teacher's MACs; given at ``data.crop_size``
and converted to the eval size like the placement's; none when only a latency budget
``search.budget_ms`` is set, checked with the latency table of :mod:`ganc.search.latency`,
loaded from or built into the store), starts the FID pool (supernet weights put into the
Ray object store once), scores the teacher, runs one searcher per budget
(``search.method``: ``evolution`` or ``nsga2``) side by side on the one pool, each a Tune
trial that scores a generation per pool call (see :mod:`ganc.search.trial`), computes KID for
each budget's Pareto set, and writes under ``runs/<id>/search/``: ``results.parquet``,
``pareto.parquet``, ``fid_vs_macs*.png``, and ``runs/<id>/best.json``
(:mod:`ganc.search.report`). The Tune experiment lives in ``runs/<id>/search/tune``;
running the stage again on an unfinished experiment resumes it (each search from its
newest checkpoint there, read as JSON: nothing recorded is scored again; never with
``Tuner.restore``, which would unpickle what the store holds).
"""
from __future__ import annotations

import math
import time
from typing import Optional

from ..budgets import recipe_budgets
from ..config import RunConfig
from ..context import keep_credentials_out_of_tune, ray_storage, stage_context
from ..data.splits import choice_split
from ..profile import count_params
# also re-exported here for the benches and tests: load_supernet, cost_model, SearchError,
# search_trial, make_searcher, METHODS, _trial_resources, fit_searches, rows_of, ...
from ..subnets import SearchError, cost_model, load_supernet
from .experiment import (EXPERIMENT, _trial_resources, check_resuming, collect_searches,
                         fit_searches, rows_of, searches_of, trainable_of)
from .inputs import (SearchPlan, check_method, criterion_mode, criterion_of, eval_split_of,
                     latency_table_for, plan_search)
from .report import front_of, write_results
from .trial import METHODS, make_searcher, search_trial


# ---------------------------------------------------------------- the stage
def run_search(cfg: RunConfig, store=None, *, method: Optional[str] = None,
               budget_macs: Optional[float] = None, budget_ms: Optional[float] = None,
               fresh: bool = False, ctx=None) -> dict:
    """Run (or resume) the search of a run; returns the summary written to best.json
    (``ctx``: the pipeline's run context, else one is opened)."""
    with stage_context(cfg, store, ctx=ctx) as ctx:
        return _search(ctx, method=method, budget_macs=budget_macs, budget_ms=budget_ms,
                       fresh=fresh)


def _search(ctx, *, method: Optional[str], budget_macs: Optional[float],
            budget_ms: Optional[float], fresh: bool) -> dict:
    """Check the inputs, start the FID pool, score the teacher, run (or resume) one search
    per budget, score KID on the Pareto sets and write the results."""
    cfg, run = ctx.cfg, ctx.run
    method, criterion, budget_ms = check_method(cfg, method, budget_ms)
    asked = recipe_budgets(cfg.search, budget_macs)
    plan = plan_search(ctx, method, criterion, budget_ms, asked, budget_macs)
    storage_path, fs = ray_storage(run, "search")
    # an unfinished experiment is resumed only under what it started with (one line)
    resuming = check_resuming(run, cfg, plan.fingerprint(), storage_path, fs, fresh)
    pool = None
    try:
        pool = _fid_pool(ctx)
        _register_supernet(pool, plan)
        teacher_info = _teacher_info(run, pool, plan)
        trainable = trainable_of(pool.client(), plan.space, plan.cost, cfg.search,
                                 latency=plan.table, budget_ms=plan.budget_ms)
        keep_credentials_out_of_tune()
        t0 = time.time()
        # resuming was decided (and its fingerprint checked) above
        results, resumed = fit_searches(trainable, searches_of(method, plan.budgets),
                                        storage_path, fs, fresh=not resuming)
        searches = collect_searches(results, run, method, plan.budgets, asked)
        kid_n = (_kid_for_fronts(pool, searches, plan.latency, criterion) if cfg.fid.kid
                 else 0)
        stats = pool.stats()
        settings = _settings_of(ctx, plan, pool, kid_n, resumed, t0)
        print(f"[ganc] search: {sum(len(s['rows']) for s in searches)} configs scored over "
              f"{len(searches)} budget(s); pool restarts {stats['restarts']}, timeouts "
              f"{stats['timeouts']}, retries {stats['retries']}, failed {stats['failed']}",
              flush=True)
        return write_results(run, searches, teacher_info, settings, plan.cost, pool=stats)
    finally:
        if pool is not None:
            pool.close()


def _fid_pool(ctx):
    """The FID pool on the search's split (:func:`eval_split_of`)."""
    from ..metrics.pool import FidPool  # deferred: torch_fidelity, torchvision
    cfg = ctx.cfg
    return FidPool(eval_split_of(cfg, ctx), num_actors=cfg.fid.num_actors, store=ctx.root,
                   fid=cfg.fid, use_gpu=ctx.use_gpu, gpus=ctx.placement.get("gpus"),
                   resources=ctx.resources, wait_s=cfg.scale.wait_s)


def _register_supernet(pool, plan: SearchPlan) -> None:
    """The supernet as the pool's ``super`` (its weights put into the Ray object store
    once)."""
    sup, cost = plan.sup, plan.cost
    pool.register_model("super", arch=sup["netG"], state=sup["model"].state_dict(),
                        ngf=int(sup["ngf"]), norm=sup.get("norm", "instance"),
                        dropout=float(sup.get("dropout", 0.0)),
                        input_nc=cost.input_nc, output_nc=cost.output_nc,
                        recalibrate=True)


def _teacher_info(run, pool, plan: SearchPlan) -> Optional[dict]:
    """The teacher's MACs, params and scores (``search/teacher.json``: scored once, on
    the pool, then read back); None without a teacher."""
    from ..metrics.pool import SubnetSpec  # deferred: torch_fidelity, torchvision
    teacher, ref = plan.teacher, plan.teacher_ref
    if teacher is None:
        return None
    if run.exists("search/teacher.json"):
        return run.get_json("search/teacher.json")
    pool.register_model("teacher", teacher)
    ts = pool.score([SubnetSpec("teacher")])[0]
    info = {"netG": ref.get("netG"), "ngf": ref.get("ngf"),
            "config_str": ref.get("config_str"), "source": ref.get("source"),
            "macs": plan.teacher_macs, "params": count_params(teacher), "fid": ts.fid,
            "kid": ts.kid_mean, "miou": ts.miou, "pixel_acc": ts.pixel_acc}
    run.put_json("search/teacher.json", info)
    pool.unregister_model("teacher")
    return info


def _settings_of(ctx, plan: SearchPlan, pool, kid_n: int, resumed: bool,
                 t0: float) -> dict:
    """The search's settings as recorded in best.json (``t0``: when the searches began)."""
    cfg, sc, budgets = ctx.cfg, ctx.cfg.search, plan.budgets
    table, size = plan.table, plan.size
    return {"method": plan.method,
            "budget_macs": budgets[0] if math.isfinite(budgets[0]) else None,
            "budgets_macs": [b if math.isfinite(b) else None for b in budgets],
            "budget_ms": plan.budget_ms, "population": sc.population,
            "parent_ratio": sc.parent_ratio, "mutation_prob": sc.mutation_prob,
            "mutation_ratio": sc.mutation_ratio, "generations": sc.generations,
            "weighted_sample": sc.weighted_sample,
            "seed": sc.seed, "latency_objective": plan.latency, "criterion": plan.criterion,
            "calibration_images": (int(sc.calibration_images)
                                   if plan.fam.calibrates_bn else None),
            "latency_table": None if table is None else {
                **table.describe(), "key": plan.table_key},
            "scoring": "one Tune trial per budget, a generation per pool call",
            "fid_actors": pool.num_actors, "kid": "Pareto sets only",
            "kid_scored": kid_n,
            "eval_size": size, "macs_convention": "torchprofile",
            "fid_split": choice_split(cfg.data),
            "budget_rule": ("--budget-macs / search.budget(s)_macs at "
                            f"{ctx.placement['recipe_size']}px"
                            if plan.asked != [0.0] else
                            f"a tenth of the teacher's MACs at {size}px"),
            "space": plan.space.to_dict(), "resumed": resumed,
            "wall_s": time.time() - t0}


def _kid_for_fronts(pool, searches: list[dict], latency: bool, criterion: str = "fid") -> int:
    """KID of every config on the Pareto front of each search (off during the search),
    written into those rows; returns how many configs were scored for it."""
    from ..metrics.pool import SubnetSpec  # deferred: torch_fidelity, torchvision
    configs = sorted({r["config"] for s in searches
                      for r in front_of(s["rows"], latency, criterion)})
    if not configs:
        return 0
    scores = pool.score([SubnetSpec("super", c) for c in configs], kid=True,
                        failures="record")
    kid = {c: s.kid_mean for c, s in zip(configs, scores) if s.status == "ok"}
    for s in searches:
        for r in s["rows"]:
            if r["config"] in kid:
                r["kid"] = None if kid[r["config"]] is None else float(kid[r["config"]])
    return len(configs)


__all__ = ["run_search", "load_supernet", "search_trial", "fit_searches", "searches_of",
           "make_searcher", "rows_of", "recipe_budgets", "SearchError", "METHODS",
           "EXPERIMENT", "criterion_of", "criterion_mode", "eval_split_of",
           "latency_table_for", "cost_model"]
