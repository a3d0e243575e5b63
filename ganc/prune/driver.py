"""The Ray edge of pruning: one Ray Tune trial per target ratio, FID sampling, export.

``run_prune(cfg, store)``:

1. opens ``runs/<run_id>/`` (``store.run_id`` or ``name``), resolves the data (generated
   demo data when ``data.root`` is empty) and the original generator: the run's
   ``teacher/final.pt`` (from ``ganc train``), else ``model.teacher_weights``, else a
   randomly initialised ``model.teacher`` (demo/tests only; the model card says so);
2. starts a scorer actor owning the FID actor pool (``ganc.metrics.pool.FidPool``,
   ``fid.num_actors`` actors) on the eval split, unless ``fid: none``;
3. runs ``Tuner(trial, param_space={"target": grid_search(prune.targets)})``: each trial
   builds a :class:`~ganc.prune.pruner.Pruner`, trains ``prune.steps`` steps, reports
   losses and MACs ratios every ``log_every`` steps and, every ``prune.sample_every``
   steps, slices ``prune.samples`` hard sub-generators sampled from genG (the
   deterministic one first) and scores them in parallel on the pool, reporting the best
   FID so far;
4. at the end of a trial slices the best sampled sub-generator (else the final hard gates)
   into plain G and D, fine-tunes a copy with the search winner's recipe
   (:class:`~ganc.prune.finetuning.FinetuneRecipe`: ``distill.*`` weights with feature
   distillation, ``finetune.lr`` with its linear decay) for ``prune.finetune_steps``
   steps, scores both on the search split, keeps the better
   (:func:`ganc.results.choose_export`, as the search's fine-tune does) and
   exports it to ``prune/p<target>/`` (``model.pt``, ``net_D.pt``, ``model.onnx``, ``model.pt2``,
   ``model.json`` model card, ``history.jsonl``);
5. merges one row per target (``method='prune-lds'``) into ``search/results.parquet``, the
   table the search writes (:func:`ganc.results.append_results`: keyed by method,
   target and config, so a re-run or a retry adds no duplicate), and writes
   ``prune/summary.json`` (the rows of every variant pruned in the run, earlier ones
   kept) and, per variant, ``prune/configs/<folder>.yaml`` (the config it ran with).

A trial writes resume checkpoints every ``prune.checkpoint_every`` steps of its agents and
of its fine-tune (:mod:`ganc.prune.checkpoints`); a prune started again continues each
target from its newest one, when made with the same target and config.

The steps of one trial are :mod:`ganc.prune.trial` (plain PyTorch); the networks it starts
from :mod:`ganc.prune.models`, its targets :mod:`ganc.prune.targets`, the exported unit
:mod:`ganc.prune.artifacts`, its checkpoints :mod:`ganc.prune.checkpoints`. One trial runs in
one process (CPU or one GPU). Several GPUs per trial (Ray Train workers inside a trial) are
not implemented.
"""
from __future__ import annotations

import copy
import json
import os
import time
from typing import Optional

import torch

from ..config import RunConfig, from_dict
from ..context import (keep_credentials_out_of_tune, keep_pickles_out_of_tune, ray_storage,
                       stage_context)
from ..data.source import DataRef
from ..errors import ConfigError, one_line
from ..families import check_prunable
from ..resources import worker_bundle
from ..results import RESULTS, append_results
from ..store import open_store
from .artifacts import (STAGE, PruneError, export_prefix, read_pruned_unit,
                        variant_config_key)
from .models import build_base, build_teacher
from .pruner import check_prune_config
from .targets import resolve_targets
from .trial import METHOD, prune_target

RESULTS_KEY = RESULTS             # the search's table; rows merged by append_results
SCORERS = ("pool", "local", "none")


# ---------------------------------------------------------------------- scoring
def _eval_split(cfg: RunConfig, data_spec: dict):
    """The split pruning choices are scored on: the search split held out of the training
    data (``data.search_split``), else the eval split."""
    from ..metrics.pool import EvalSplit  # deferred: torchvision, torch_fidelity
    from ..metrics.splits import scoring_split  # deferred: (ganc.metrics)
    ref = DataRef.from_spec(data_spec)
    split = scoring_split(cfg, ref.local(), name=ref.name)
    n = int(cfg.prune.eval_n)
    if n > 0:
        inputs = split.inputs.load_all() if hasattr(split.inputs, "load_all") else split.inputs
        split = EvalSplit(inputs[:n], split.real, split.label)
    return split


class _Scorer:
    """Owns a FID pool (or a local one); scores lists of plain generators."""

    def __init__(self, cfg_dict: dict, data_spec: dict, store_url: str, endpoint: str,
                 kind: str, num_cpus: float, placement: dict):
        from ..metrics.pool import FidPool, LocalPool  # deferred: torchvision, torch_fidelity
        cfg = from_dict(cfg_dict)
        split = _eval_split(cfg, data_spec)
        store = open_store(store_url, endpoint_url=endpoint or None)
        if kind == "pool":
            self.pool = FidPool(split, num_actors=max(1, cfg.fid.num_actors), store=store,
                                fid=cfg.fid, num_cpus=num_cpus,
                                use_gpu=bool(placement["use_gpu"]), gpus=placement.get("gpus"),
                                resources=placement.get("resources"), wait_s=cfg.scale.wait_s)
        else:
            self.pool = LocalPool(split, store=store, fid=cfg.fid)
        self.serial = 0

    def score(self, models: list) -> list:
        from ..metrics.pool import SubnetSpec  # deferred: torchvision, torch_fidelity
        names = []
        for m in models:
            self.serial += 1
            names.append(f"pruned-{self.serial}")
            self.pool.register_model(names[-1], m)
        try:
            scores = self.pool.score([SubnetSpec(n) for n in names])
        finally:
            for n in names:  # release the weights from the object store
                self.pool.unregister_model(n)
        return [{"fid": s.fid, "kid": s.kid_mean, "seconds": s.seconds, "actor": s.actor}
                for s in scores]

    def close(self):
        self.pool.close()


def _start_scorer(ctx, kind: str):
    """The scorer actor on the driver's node (``kind``: pool | local), with a CPU for
    its pool when the cluster has one beside the trials and the FID actors."""
    import ray  # deferred: ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # deferred: ray
    cfg = ctx.cfg
    n_trials = len(cfg.prune.targets)
    total_cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = max(1, cfg.fid.num_actors)
    fid_cpus = 1.0 if total_cpus >= n_trials * cfg.scale.cpus_per_worker + actors else 0.0
    # The scorer owns the FID pool as the driver would (the driver's Inception
    # weights and data cache), so it stays on the driver's node: without a CPU it
    # could otherwise land on any node, one without the weights.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    cls = ray.remote(num_cpus=0, scheduling_strategy=here)(_Scorer)
    return cls.remote(cfg.to_dict(), ctx.data.to_spec(), ctx.root.url(), ctx.endpoint_url,
                      kind, fid_cpus,
                      {k: ctx.placement.get(k) for k in ("use_gpu", "gpus", "resources")})


def _stop_scorer(actor) -> None:
    import ray  # deferred: ray
    try:
        ray.get(actor.close.remote())
    except Exception:
        pass
    ray.kill(actor)


# ---------------------------------------------------------------------- one trial
def _trial(config, spec=None, scorer=None):
    """Ray Tune function trainable: one target."""
    import ray  # deferred: ray
    from ray import tune  # deferred: ray
    ctx = tune.get_context()
    spec = {**spec, "trial_id": ctx.get_trial_id()}
    torch.set_num_threads(max(1, int(spec.get("threads", 1))))
    call = None
    if scorer is not None:
        def call(models):
            return ray.get(scorer.score.remote(models))
    prune_target(spec, float(config["target"]), report=tune.report, scorer=call)


# ---------------------------------------------------------------------- driver
def run_prune(cfg: RunConfig, store=None, *, targets=None, scorer: str = "pool",
              num_cpus: Optional[int] = None, ctx=None) -> dict:
    """Prune for every target on Ray Tune; returns the summary (also in the store)
    (``ctx``: the pipeline's run context, else one is opened)."""
    check_prunable(cfg.model.teacher)
    cfg = copy.deepcopy(cfg)
    if targets is not None:
        cfg.prune.targets = [float(t) for t in targets]
    check_prune_config(cfg.prune)
    if scorer not in SCORERS:
        raise ConfigError(f"scorer {scorer!r} is not one of: {', '.join(SCORERS)}")
    with stage_context(cfg, store, num_cpus=int(num_cpus or os.cpu_count() or 1),
                       ctx=ctx) as ctx:
        return _prune(ctx, scorer)


def _prune(ctx, scorer: str) -> dict:
    """The targets resolved, one Tune trial each beside the scorer actor, the rows merged
    into the results table and ``prune/summary.json``."""
    import ray  # deferred: ray
    cfg, run = ctx.cfg, ctx.run
    G0, _, _ = build_teacher(cfg, run)  # fail early on a bad teacher
    cfg.prune.targets = resolve_targets(cfg, run, G0, build_base(cfg, run, G0)[0],
                                        ctx.placement)
    config = cfg.to_yaml().encode()
    run.write_bytes(f"{STAGE}/config.yaml", config)
    for t in cfg.prune.targets:   # each variant's own, which a later variant does not replace
        run.write_bytes(variant_config_key(export_prefix(cfg.prune, t)), config)
    t0 = time.perf_counter()
    scorer_actor = None
    try:
        spec = {"config": cfg.to_dict(), **ctx.worker_spec(),
                "threads": cfg.scale.cpus_per_worker}
        if scorer != "none":
            scorer_actor = _start_scorer(ctx, scorer)
            ray.get(scorer_actor.score.remote([]))  # surface setup errors now
        _fit_trials(ctx, spec, scorer_actor)
    finally:
        if scorer_actor is not None:
            _stop_scorer(scorer_actor)
    return _summarise(cfg, run, t0)


def _fit_trials(ctx, spec: dict, scorer_actor) -> None:
    """One trial per target: the CPUs of a worker, a GPU on a GPU placement, and
    scale.resources; a PruneError naming the first failed trial."""
    from ray import tune  # deferred: ray
    cfg = ctx.cfg
    bundle = worker_bundle(cfg.scale.cpus_per_worker, ctx.use_gpu, ctx.resources)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, spec=spec, scorer=scorer_actor),
        tune.PlacementGroupFactory([bundle]))
    storage_path, fs = ray_storage(ctx.run, STAGE)
    keep_credentials_out_of_tune()
    keep_pickles_out_of_tune()
    tuner = tune.Tuner(
        trainable,
        param_space={"target": tune.grid_search([float(t) for t in cfg.prune.targets])},
        tune_config=tune.TuneConfig(max_concurrent_trials=len(cfg.prune.targets)),
        run_config=tune.RunConfig(name="tune", storage_path=storage_path,
                                  storage_filesystem=fs, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)))
    results = tuner.fit()
    errors = [r.error for r in results if r.error]
    if errors:
        raise PruneError(f"pruning trial failed: {one_line(errors[0], last=True)}")


def _summarise(cfg: RunConfig, run, t0: float) -> dict:
    """Every target's row merged into the results table; the summary of this prune (its
    rows), written to ``prune/summary.json`` with the rows of the variants pruned before."""
    rows = []
    for t in cfg.prune.targets:
        prefix = export_prefix(cfg.prune, t)
        rows.append(json.loads(run.read_unit_file(prefix, "row.json",
                                                  read_pruned_unit(run, prefix))))
    append_results(run, rows)
    # the variants pruned before (other folders) stay in the summary beside this run's
    done = {r.get("prefix") for r in rows}
    earlier = (run.get_json(f"{STAGE}/summary.json").get("rows", [])
               if run.exists(f"{STAGE}/summary.json") else [])
    kept = [r for r in earlier if r and r.get("prefix") and r["prefix"] not in done]
    summary = {"method": METHOD, "run": run.url(), "rows": rows,
               "results": run.url(RESULTS_KEY), "seconds": time.perf_counter() - t0}
    run.put_json(f"{STAGE}/summary.json", {**summary, "rows": kept + rows})
    return summary


__all__ = ["run_prune", "prune_target", "PruneError", "METHOD", "STAGE", "RESULTS_KEY",
           "SCORERS"]
