"""The search stage: one Ray Tune trial per search, scoring batches through the FID pool.

    run_search(cfg, store) -> summary dict

reads ``runs/<id>/supernet/final.pt``, checks every MACs budget (``search.budgets``, else
``search.budget_macs``, default a tenth of the teacher's MACs; given at ``data.crop_size``
and converted to the eval size like the placement's; none when only a latency budget
``search.budget_ms`` is set, checked with the latency table of :mod:`ganc.search.latency`,
loaded from or built into the store), starts the FID pool (supernet weights put into the
Ray object store once), scores the teacher, runs one searcher per budget
(``search.method``: ``evolution`` or ``nsga2``) side by side on the one pool, each a Tune
trial that scores a generation per pool call (see :func:`search_trial`), computes KID for
each budget's Pareto set, and writes under ``runs/<id>/search/``: ``results.parquet``,
``pareto.parquet``, ``fid_vs_macs*.png``, and ``runs/<id>/best.json``
(:mod:`ganc.search.report`). The Tune experiment lives in ``runs/<id>/search/tune``;
running the stage again on an unfinished experiment resumes it with ``Tuner.restore``
(each search from its last checkpoint: nothing recorded is scored again).
"""
from __future__ import annotations

import math
import time
from typing import Optional

from ..config import RunConfig, check_criterion as check_run_criterion
from ..criteria import check_criterion, get_criterion
from ..errors import ConfigError
from ..families import family_of
from ..resume import check_resume, resume_inputs
from ..space import SearchSpace
from ..subnets import SearchError, cost_model, input_shape, load_supernet
from .cost import CostModel, check_budget, size_label
from .latency import LatencyBudget, check_budget_ms, check_latency_budget
from .report import write_results

METHODS = ("evolution", "nsga2")


def _trial_resources():
    """A search trial only waits on the FID pool: no CPU (the pool's actors hold the CPUs),
    so one trial per budget always fits beside the pool."""
    from ray import tune
    return tune.PlacementGroupFactory([{"CPU": 0, "memory": 1 << 20}])
EXPERIMENT = "tune"


# ---------------------------------------------------------------- inputs
def criterion_of(cfg: RunConfig, method: Optional[str] = None) -> tuple[str, str]:
    """(metric, mode) of ``search.criterion``, e.g. ``("fid", "min")`` or ``("miou",
    "max")``, checked against the data and, with ``method``, the search method."""
    check_run_criterion(cfg, method)
    return (cfg.search.criterion, criterion_mode(cfg.search.criterion))


def criterion_mode(criterion: str) -> str:
    """Tune's mode of a search criterion (:attr:`ganc.criteria.Criterion.mode`)."""
    return get_criterion(criterion).mode


def eval_split_of(cfg: RunConfig, ctx):
    """The FID pool's split: the search split held out of the training data
    (``data.search_split``), else the eval split, read from the run's dataset on this node
    (``ctx``: the run's :class:`ganc.context.RunContext`). Val / test are otherwise read
    only by the report."""
    from ..metrics.splits import scoring_split
    return scoring_split(cfg, ctx.data_root(), name=ctx.data.name)


# ---------------------------------------------------------------- one search = one trial
# Design (issue 11): Ray Tune is the experiment layer (restore, resources, results,
# TensorBoard), but a trial is a whole search (method x budget x seed), not one
# sub-network. The trial asks its searcher for a batch -- a whole generation of the
# evolution (generational, as the published recipe: a generation of 100 configs keeps up
# to 100 actors busy, and the tail of one search's generation is filled by the searches of
# the other budgets that share the pool), or ``population`` proposals of NSGA-II -- scores
# the batch through the pool's dispatcher in one call, tells the searcher, and reports a
# Tune checkpoint (searcher state + the rows so far) after every batch. A restored trial
# starts from its last checkpoint, so nothing recorded there is scored again, and the
# experiment state holds one entry per search, not one per config.
STATE_FILE, ROWS_FILE, PROGRESS_FILE = "searcher.state", "rows.json", "progress.json"


def search_trial(trial_config: dict, client, space: SearchSpace, cost: CostModel, settings,
                 latency=None, budget_ms: Optional[float] = None,
                 model: str = "super") -> None:
    """Tune trainable: one search (``trial_config['search']``: index, method, budget) on
    ``client`` (a :class:`ganc.metrics.pool.PoolClient`, or anything with its ``score``);
    the searcher ranks by ``settings.criterion`` (fid, or miou maximised)."""
    import json
    import os
    import tempfile
    from ray import tune
    from ray.tune.search import Searcher
    from ..metrics.pool import SubnetSpec
    spec = trial_config["search"]
    budget = math.inf if spec["budget"] is None else float(spec["budget"])
    constraint = None if budget_ms is None else LatencyBudget(latency, budget_ms)
    criterion = getattr(settings, "criterion", "fid")
    crit = get_criterion(criterion)
    searcher = make_searcher(spec["method"], space, budget, cost, settings,
                             latency=bool(settings.latency_objective), constraint=constraint,
                             criterion=criterion)
    rows: list = []
    serial, batches = 0, 0
    saved = _newest_saved_state()
    if saved is not None:
        with tempfile.TemporaryDirectory(prefix="ganc-search-") as d:
            with open(os.path.join(d, STATE_FILE), "wb") as f:
                f.write(saved[STATE_FILE])
            searcher.restore(os.path.join(d, STATE_FILE))
        rows = json.loads(saved[ROWS_FILE])
        progress = json.loads(saved[PROGRESS_FILE])
        serial, batches = int(progress["serial"]), int(progress["batches"])
    limit = max(1, int(settings.population))
    tag = f"b{int(spec['index'])}"
    while True:
        batch, finished = [], False
        while len(batch) < limit:
            tid = f"{tag}-{serial}"
            serial += 1
            s = searcher.suggest(tid)
            if s is None:
                break
            if s == Searcher.FINISHED:
                finished = True
                break
            batch.append((tid, s["config"], int(s.get("generation", -1))))
        if not batch:
            if finished:
                break
            raise SearchError(f"search {tag}: the searcher waits with nothing to score")
        t0 = time.time()
        scores = client.score([SubnetSpec(model, c, tag=t) for t, c, _ in batch], kid=False,
                              failures="record")
        wall = time.time() - t0
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
            rows.append(row)
            searcher.on_trial_complete(tid, row if ok else None, error=not ok)
        batches += 1
        with tempfile.TemporaryDirectory(prefix="ganc-search-") as d:
            searcher.save(os.path.join(d, STATE_FILE))
            with open(os.path.join(d, ROWS_FILE), "w") as f:
                json.dump(rows, f)
            with open(os.path.join(d, PROGRESS_FILE), "w") as f:
                json.dump({"serial": serial, "batches": batches}, f)
            good = [r["fid"] for r in rows if r["status"] == "ok"]
            good_miou = [r["miou"] for r in rows if r["status"] == "ok" and r.get("miou")
                         is not None]
            ranked = [r[crit.name] for r in rows if r["status"] == "ok"
                      and r.get(crit.name) is not None]
            n_failed = sum(r["status"] != "ok" for r in rows)
            tune.report({"batches": batches, "n_scored": len(rows), "n_failed": n_failed,
                         "best_fid": min(good) if good else None,
                         "best_miou": max(good_miou) if good_miou else None,
                         "generation": max(g for _, _, g in batch), "done": finished},
                        checkpoint=tune.Checkpoint.from_directory(d))
        best = (f"best {crit.label} {crit.format(crit.best_of(ranked))}" if ranked
                else "nothing scored yet")
        print(f"[search {spec['method']} {tag}] batch {batches}: {len(batch)} configs in "
              f"{wall:.0f}s, {len(rows)} scored ({n_failed} failed), {best}", flush=True)
        if finished:
            break


def _saved_state(read) -> Optional[dict]:
    """The three files of a search checkpoint (``read(name) -> bytes``), or None when one
    is missing or unreadable (a checkpoint cut short)."""
    import json
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
    import os
    from ray import tune
    found = []
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            found.append(_saved_state(lambda n: open(os.path.join(d, n), "rb").read()))
    try:
        import pyarrow.fs as pafs
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


def rows_of(result) -> list[dict]:
    """The rows a search trial recorded (its last checkpoint)."""
    import json
    import os
    if result.checkpoint is None:
        return []
    with result.checkpoint.as_directory() as d:
        with open(os.path.join(d, ROWS_FILE)) as f:
            return json.load(f)


def fit_searches(trainable, searches: list[dict], storage_path: str, fs=None,
                 fresh: bool = False):
    """Run (or, unless ``fresh``, resume with ``Tuner.restore``) one trial per search of
    ``searches`` side by side; returns (ResultGrid, resumed). The one place the search's
    Tune experiment is made (the stage, the benches and the tests use it)."""
    from ray import tune
    exp_path = f"{storage_path.rstrip('/')}/{EXPERIMENT}"
    if not fresh and tune.Tuner.can_restore(exp_path, storage_filesystem=fs):
        tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True,
                                   resume_errored=True, storage_filesystem=fs)
        return tuner.fit(), True
    tuner = tune.Tuner(
        trainable, param_space={"search": tune.grid_search(list(searches))},
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=len(searches),
                                    reuse_actors=False),
        run_config=tune.RunConfig(
            name=EXPERIMENT, storage_path=storage_path, storage_filesystem=fs, verbose=0,
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
    return tuner.fit(), False


def searches_of(method: str, budgets: list[float]) -> list[dict]:
    """One search per budget (the first is the primary); ``inf`` (a latency budget alone)
    is recorded as None."""
    return [{"index": i, "method": method, "budget": b if math.isfinite(b) else None}
            for i, b in enumerate(budgets)]


def latency_table_for(cfg: RunConfig, root, space: SearchSpace, cost: CostModel):
    """(table, key) of ``search.latency_runtime`` / ``latency_threads`` at the eval size:
    from the store's ``latency/`` cache, else measured on this machine and cached."""
    from ..runtime import check_runtime, check_threads
    from .latency_build import load_or_build
    sc = cfg.search
    check_runtime(sc.latency_runtime, "search.latency_runtime")
    check_threads(sc.latency_threads, "search.latency_threads")
    return load_or_build(root, space, cost.size, runtime=sc.latency_runtime,
                         threads=int(sc.latency_threads), input_nc=cost.input_nc,
                         output_nc=cost.output_nc, norm=cost.norm,
                         device=sc.latency_device or None, log=print)


# ---------------------------------------------------------------- searchers
def make_searcher(method: str, space: SearchSpace, budget: float, cost: CostModel,
                  settings, latency: bool = False, constraint=None, criterion: str = "fid"):
    """The searcher of ``method``; ``constraint(config) -> bool`` is a further budget
    (the latency budget), ``latency`` adds ``latency_ms`` as an NSGA-II objective;
    ``criterion``: the rows' metric it ranks by (fid minimised, miou maximised)."""
    if method == "evolution":
        from .searcher import EvolutionSearcher
        return EvolutionSearcher.from_settings(space, budget, cost, settings,
                                               metric=criterion,
                                               mode=criterion_mode(criterion),
                                               constraint=constraint)
    check_criterion(criterion, method=method)
    if method == "nsga2":
        from .nsga2 import NSGA2Searcher
        objectives = [criterion, "macs"] + (["latency_ms"] if latency else [])
        return NSGA2Searcher(space, budget, cost, objectives=objectives,
                             population=settings.population, generations=settings.generations,
                             mutation_prob=settings.mutation_prob,
                             mutation_ratio=settings.mutation_ratio, seed=settings.seed,
                             constraint=constraint)
    raise ConfigError(f"search.method {method!r} is not one of: {', '.join(METHODS)}")


# ---------------------------------------------------------------- the stage
def run_search(cfg: RunConfig, store=None, *, method: Optional[str] = None,
               budget_macs: Optional[float] = None, budget_ms: Optional[float] = None,
               fresh: bool = False, ctx=None) -> dict:
    """Run (or resume) the search of a run; returns the summary written to best.json
    (``ctx``: the pipeline's run context, else one is opened)."""
    from ..context import stage_context
    with stage_context(cfg, store, ctx=ctx) as ctx:
        return _search(ctx, method=method, budget_macs=budget_macs, budget_ms=budget_ms,
                       fresh=fresh)


def recipe_budgets(sc, budget_macs: Optional[float] = None) -> list[float]:
    """The budgets asked for, at the recipe's size: ``--budget-macs``, else
    ``search.budgets``, else ``[search.budget_macs]`` (0: a tenth of the teacher's MACs)."""
    if budget_macs:
        return [float(budget_macs)]
    if sc.budgets:
        out = []
        for b in sc.budgets:
            try:
                v = float(b)
            except (TypeError, ValueError):
                raise ConfigError(f"search.budgets: {b!r} is not a number of MACs") from None
            if not v > 0:
                raise ConfigError(f"search.budgets: {b!r} must be positive")
            out.append(v)
        if len(set(out)) != len(out):
            raise ConfigError(f"search.budgets {list(sc.budgets)} repeats a budget")
        return out
    return [float(sc.budget_macs or 0)]


def _search(ctx, *, method: Optional[str], budget_macs: Optional[float],
            budget_ms: Optional[float], fresh: bool) -> dict:
    from ..data.splits import choice_split
    from ..placement import check_below_teacher, search_budgets
    from ..profile import count_macs, count_params
    from ..context import keep_credentials_out_of_tune, ray_storage
    from ..train.supernet import load_teacher
    from ..data.splits import image_hw

    cfg, root, run = ctx.cfg, ctx.root, ctx.run
    sc = cfg.search
    method = method or sc.method
    if method not in METHODS:
        raise ConfigError(f"search.method {method!r} is not one of: {', '.join(METHODS)}")
    criterion, _ = criterion_of(cfg, method)
    budget_ms = sc.budget_ms if budget_ms is None else budget_ms
    if budget_ms is not None:
        budget_ms = check_budget_ms(budget_ms)
    asked = recipe_budgets(sc, budget_macs)
    sup = load_supernet(run)
    space: SearchSpace = sup["space"]
    size = int(cfg.data.crop_size)              # the placement's eval size
    cost = cost_model(sup, size, image_hw(cfg.data)[0])
    teacher_ref = sup.get("teacher")
    teacher = load_teacher(teacher_ref, ctx.endpoint_url) if teacher_ref else None
    shape = input_shape(cost)
    teacher_macs = count_macs(teacher, shape) if teacher is not None else None
    # budgets are MACs at data.crop_size (the recipe's size), converted like the placement's
    if asked == [0.0] and budget_ms is not None:
        budgets = [math.inf]                   # a latency budget alone
    else:
        budgets = search_budgets(ctx.placement, asked, teacher_macs)
        # a compressed model must be smaller than its teacher (one line, at the eval size)
        check_below_teacher(list(zip(budgets, asked)), teacher_macs, size_label(cost),
                            "search.budgets" if sc.budgets and not budget_macs
                            else "search.budget_macs")
    for b in budgets:
        if math.isfinite(b):
            check_budget(space, b, cost)       # one line, before anything starts
    latency = bool(sc.latency_objective)
    fam = family_of(sup["netG"])
    if not fam.supports_latency and (budget_ms is not None or latency):
        raise ConfigError("search.budget_ms and search.latency_objective are not available "
                          f"for the {fam.title} family yet (no latency table for its inputs)")
    table = table_key = None
    if budget_ms is not None or latency:
        table, table_key = latency_table_for(cfg, root, space, cost)
    if budget_ms is not None:
        check_latency_budget(space, budget_ms, table)

    from ray import tune
    from ..metrics.pool import FidPool, SubnetSpec
    storage_path, fs = ray_storage(run, "search")
    resuming = not fresh and tune.Tuner.can_restore(f"{storage_path}/{EXPERIMENT}",
                                                    storage_filesystem=fs)
    # an unfinished experiment is resumed only under what it started with (one line)
    check_resume(run, "search", resume_inputs(
        cfg, "search", **{"search.method": method, "search.budget_ms": budget_ms,
                          "search.budgets_macs": [b if math.isfinite(b) else None
                                                  for b in budgets],
                          "search.space": space.to_dict(), "supernet.sha256": sup["sha256"]}),
        resuming, "rerun it with --fresh (ganc search), --restart-from search (ganc "
                  "compress) or use a new --run-id")
    pool = None
    try:
        pool = FidPool(eval_split_of(cfg, ctx), num_actors=cfg.fid.num_actors, store=root,
                       fid=cfg.fid, use_gpu=ctx.use_gpu, gpus=ctx.placement.get("gpus"),
                       resources=ctx.resources, wait_s=cfg.scale.wait_s)
        m = sup["model"]
        pool.register_model("super", arch=sup["netG"], state=m.state_dict(),
                            ngf=int(sup["ngf"]), norm=sup.get("norm", "instance"),
                            dropout=float(sup.get("dropout", 0.0)),
                            input_nc=cost.input_nc, output_nc=cost.output_nc,
                            recalibrate=True)
        teacher_info = None
        if teacher is not None:
            if run.exists("search/teacher.json"):
                teacher_info = run.get_json("search/teacher.json")
            else:
                pool.register_model("teacher", teacher)
                ts = pool.score([SubnetSpec("teacher")])[0]
                teacher_info = {"netG": teacher_ref.get("netG"), "ngf": teacher_ref.get("ngf"),
                                "config_str": teacher_ref.get("config_str"),
                                "source": teacher_ref.get("source"), "macs": teacher_macs,
                                "params": count_params(teacher), "fid": ts.fid,
                                "kid": ts.kid_mean, "miou": ts.miou,
                                "pixel_acc": ts.pixel_acc}
                run.put_json("search/teacher.json", teacher_info)
                pool.unregister_model("teacher")
        trainable = tune.with_resources(
            tune.with_parameters(search_trial, client=pool.client(), space=space, cost=cost,
                                 settings=sc, latency=table, budget_ms=budget_ms),
            _trial_resources())
        keep_credentials_out_of_tune()
        t0 = time.time()
        # resuming was asked above: with nothing to restore, fit_searches does not ask again
        results, resumed = fit_searches(trainable, searches_of(method, budgets), storage_path,
                                        fs, fresh=not resuming)
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
        kid_n = _kid_for_fronts(pool, searches, latency, criterion) if cfg.fid.kid else 0
        stats = pool.stats()
        settings = {"method": method,
                    "budget_macs": budgets[0] if math.isfinite(budgets[0]) else None,
                    "budgets_macs": [b if math.isfinite(b) else None for b in budgets],
                    "budget_ms": budget_ms, "population": sc.population,
                    "parent_ratio": sc.parent_ratio, "mutation_prob": sc.mutation_prob,
                    "mutation_ratio": sc.mutation_ratio, "generations": sc.generations,
                    "weighted_sample": sc.weighted_sample,
                    "seed": sc.seed, "latency_objective": latency, "criterion": criterion,
                    "calibration_images": (int(sc.calibration_images)
                                           if fam.calibrates_bn else None),
                    "latency_table": None if table is None else {
                        **table.describe(), "key": table_key},
                    "scoring": "one Tune trial per budget, a generation per pool call",
                    "fid_actors": pool.num_actors, "kid": "Pareto sets only",
                    "kid_scored": kid_n,
                    "eval_size": size, "macs_convention": "torchprofile",
                    "fid_split": choice_split(cfg.data),
                    "budget_rule": ("--budget-macs / search.budget(s)_macs at "
                                    f"{ctx.placement['recipe_size']}px"
                                    if asked != [0.0] else
                                    f"a tenth of the teacher's MACs at {size}px"),
                    "space": space.to_dict(), "resumed": resumed,
                    "wall_s": time.time() - t0}
        print(f"[ganc] search: {sum(len(s['rows']) for s in searches)} configs scored over "
              f"{len(searches)} budget(s); pool restarts {stats['restarts']}, timeouts "
              f"{stats['timeouts']}, retries {stats['retries']}, failed {stats['failed']}",
              flush=True)
        return write_results(run, searches, teacher_info, settings, cost, pool=stats)
    finally:
        if pool is not None:
            pool.close()


def _kid_for_fronts(pool, searches: list[dict], latency: bool, criterion: str = "fid") -> int:
    """KID of every config on the Pareto front of each search (off during the search),
    written into those rows; returns how many configs were scored for it."""
    from ..metrics.pool import SubnetSpec
    from .report import front_of
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
           "make_searcher", "rows_of", "recipe_budgets", "SearchError", "METHODS"]
