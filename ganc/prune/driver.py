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
   (:func:`ganc.search.finetune.choose_export`, as the search's fine-tune does) and
   exports it to ``prune/p<target>/`` (``model.pt``, ``net_D.pt``, ``model.onnx``, ``model.pt2``,
   ``model.json`` model card, ``history.jsonl``);
5. merges one row per target (``method='prune-lds'``) into ``search/results.parquet``, the
   table the search writes (:func:`ganc.search.report.append_results`: keyed by method,
   target and config, so a re-run or a retry adds no duplicate), and writes
   ``prune/summary.json``.

One trial runs in one process (CPU or one GPU). Several GPUs per trial (Ray Train workers
inside a trial) are not implemented.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict
from typing import Optional

import torch

from ..config import RunConfig, from_dict
from ..errors import ConfigError, GancError, one_line
from ..search.finetune import choose_export
from ..search.report import RESULTS, append_results
from ..store import MANIFEST, torch_bytes
from ..weights import cpu_state
from .finetuning import FinetuneRecipe, finetune
from .pruner import Pruner, check_prune_config, describe_gates
from .slicing import hard_keep

STAGE = "prune"
PRUNABLE = ("ResnetGenerator", "MobileResnetGenerator", "SubMobileResnetGenerator")
METHOD = "prune-lds"
RESULTS_KEY = RESULTS             # the search's table; rows merged by append_results
SCORERS = ("pool", "local", "none")


class PruneError(GancError):
    """A pruning run that failed."""


# ---------------------------------------------------------------------- models
def build_teacher(cfg: RunConfig, run=None):
    """(G, D, source) -- the original generator and a discriminator to start from.

    G is the run's teacher, found as the supernet stage finds it (``model.teacher_weights``,
    else ``teacher/final.pt``, with the architecture recorded there); without either, a
    randomly initialised ``model.teacher`` (demo and tests only)."""
    from .. import nn as gnn
    from ..train.supernet import load_teacher, resolve_teacher
    from ..train.teacher import build_discriminator
    m = cfg.model
    D = build_discriminator(cfg, 6 if cfg.data.kind == "aligned" else 3)
    if m.teacher_weights or (run is not None and run.exists("teacher/final.pt")):
        ref = resolve_teacher(cfg, run)
        G, source = load_teacher(ref, cfg.store.endpoint_url), ref["source"]
        if not m.teacher_weights:
            final = run.get_torch("teacher/final.pt")
            if "netD" in final:
                try:
                    D.load_state_dict(final["netD"], strict=True)
                except RuntimeError:
                    pass  # a D of another shape: start D fresh
    else:
        from ..modelio import build_generator, teacher_spec
        G, source = gnn.init_weights(build_generator(teacher_spec(m))), "random-init"
    kind = type(G).__name__
    if kind not in PRUNABLE:
        raise ConfigError(f"teacher {kind} ({source}): pruning supports resnet_9blocks, "
                          "resnet_6blocks and mobile_resnet_9blocks")
    return G.eval(), D, source


def build_base(cfg: RunConfig, run, teacher):
    """(network to prune, its name): the teacher (``prune.base_model: teacher``) or the
    supernet's largest sub-network (``mobile``: ``supernet/final.pt`` of the run, the
    mobile network the search's candidates are cut from)."""
    if cfg.prune.base_model == "teacher":
        return teacher, "teacher"
    from .. import nn as gnn
    from ..subnets import supernet_of
    key = "supernet/final.pt"
    if run is None or not run.exists(key):
        raise ConfigError(f"prune.base_model: mobile needs the supernet; "
                          f"{run.url(key) if run is not None else key} does not exist")
    sup = supernet_of(run.get_torch(key))
    if not hasattr(sup, "largest"):
        raise ConfigError(f"prune.base_model: mobile: {type(sup).__name__} has no largest "
                          "sub-network")
    G = gnn.extract_subnet(sup, sup.largest).eval()
    if type(G).__name__ not in PRUNABLE:
        raise ConfigError(f"prune.base_model: mobile: cannot prune {type(G).__name__}")
    return G, "mobile"


def search_budgets(cfg: RunConfig, run=None, placement: Optional[dict] = None) -> list:
    """The search's MACs budgets the prune matches, one trial each: ``search.budgets`` (or
    ``search.budget_macs``), converted to the eval size by the run's ``placement`` record
    as the search converts them, else the budgets the run's search recorded
    (``best.json``, at the eval size); empty when neither is known. The one place that
    reads the search's budgets."""
    from ..search.driver import recipe_budgets
    asked = [b for b in recipe_budgets(cfg.search) if b > 0]
    if asked:
        if placement is not None:
            from ..placement import search_budgets as at_eval_size
            return at_eval_size(placement, asked, None)
        return asked
    if run is not None and run.exists("best.json"):
        best = run.get_json("best.json")
        entries = [e.get("budget_macs") for e in best.get("budgets") or []]
        recorded = [float(b) for b in entries if b] or [
            float(b) for b in [(best.get("search") or {}).get("budget_macs")] if b]
        return recorded
    return []


def resolve_targets(cfg: RunConfig, run, teacher, base, placement: Optional[dict] = None
                    ) -> list:
    """G's MACs-ratio targets: ``prune.targets`` when given, else each search budget as a
    ratio of the pruned network's MACs (without a recorded budget, the search's own rule:
    a tenth of the teacher's MACs)."""
    if cfg.prune.targets:
        return [float(t) for t in cfg.prune.targets]
    from .gated import gated_generator
    size = cfg.data.crop_size
    full = gated_generator(copy.deepcopy(base)).full_macs(size)
    budgets = search_budgets(cfg, run, placement) or [
        0.1 * gated_generator(copy.deepcopy(teacher)).full_macs(size)]
    out = []
    for b in budgets:
        t = float(b) / float(full)
        if not 0 < t <= 1:
            raise ConfigError(f"search budget {b:.4g} MACs is not below the pruned network's "
                              f"{full:.4g} MACs ({cfg.prune.base_model})")
        out.append(round(t, 6))
    return out


def finetune_length(cfg: RunConfig, n_train: int) -> int:
    """Fine-tune steps of the exported generator: ``prune.finetune_steps``, or with -1
    the search winner's (``finetune.steps``, else ``finetune.epochs + epochs_decay``
    epochs of the training split)."""
    if int(cfg.prune.finetune_steps) >= 0:
        return int(cfg.prune.finetune_steps)
    f = cfg.finetune
    if f.steps > 0:
        return int(f.steps)
    return int((f.epochs + f.epochs_decay) * math.ceil(n_train / max(1, cfg.data.batch_size)))


def export_prefix(pc, target: float) -> str:
    """``prune/p<target>`` plus a tag per setting off the default (``-mobile``, ``-nolds``,
    ``-nopeer``, ``-nod``), so the variants of a comparison sit side by side in one run."""
    tag = "".join(t for t, on in (("-mobile", pc.base_model == "mobile"),
                                  ("-nolds", not pc.use_lds),
                                  ("-nopeer", not pc.peer_feedback),
                                  ("-nod", not pc.prune_d)) if on)
    return f"{STAGE}/p{float(target):g}{tag}"


def export_pruned(run, prefix: str, G, D, card: dict, size: int,
                  files: Optional[dict] = None) -> dict:
    """State dicts, ONNX / torch.export files and the model card of a pruned generator
    under ``prefix``, committed as a unit (:meth:`ganc.store.Store.commit_unit`: the
    manifest last); with ``files`` they are added there for the caller to commit with
    the rest of the unit. Returns the card."""
    from ..export import write_deploy_files
    from ..profile import count_macs, count_params
    G = copy.deepcopy(G).cpu().eval()
    macs = count_macs(G, (1, G.input_nc, size, size))
    card = {**card, **G.description(), "macs": int(macs), "params": int(count_params(G)),
            "macs_convention": "torchprofile", "input_size": size,
            "rebuild": "ganc.prune.PrunedResnetGenerator.from_description(model.json)"}
    unit = {} if files is None else files
    unit["model.pt"] = torch_bytes(cpu_state(G.state_dict(), clone=True))
    if D is not None:
        unit["net_D.pt"] = torch_bytes(cpu_state(D.state_dict(), clone=True))
        card["netD_widths"] = list(getattr(D, "widths", []))
    card.update(write_deploy_files(run, prefix, G, G.input_nc, size, latency_repeats=3,
                                   files=unit))
    unit["model.json"] = card
    if files is None:
        run.commit_unit(prefix, unit)
    return card


def read_pruned_unit(run, prefix: str) -> dict:
    """The manifest of the pruned model committed at ``prefix``; a PruneError when there
    is none (never written, or a write cut short: its files are not trusted)."""
    manifest = run.read_unit(prefix)
    if manifest is None:
        raise PruneError(f"no complete pruned model at {run.url(prefix)} (no "
                         f"{MANIFEST}); run the prune stage again")
    return manifest


def load_pruned(run, prefix: str):
    """Rebuild an exported pruned generator (strict weights, ``weights_only``) from its
    committed unit (files checked against the manifest)."""
    from ..weights import read_state_dict
    from ..nn.pruned import PrunedResnetGenerator
    manifest = read_pruned_unit(run, prefix)
    card = json.loads(run.read_unit_file(prefix, "model.json", manifest))
    G = PrunedResnetGenerator.from_description(card)
    G.load_state_dict(read_state_dict(run.read_unit_file(prefix, "model.pt", manifest),
                                      name=run.url(f"{prefix}/model.pt")), strict=True)
    return G.eval(), card


# ---------------------------------------------------------------------- scoring
def _eval_split(cfg: RunConfig, data_spec: dict):
    """The split pruning choices are scored on: the search split held out of the training
    data (``data.search_split``), else the eval split."""
    from ..data.source import DataRef
    from ..metrics.splits import scoring_split
    from ..metrics.pool import EvalSplit
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
        from ..metrics.pool import FidPool, LocalPool
        from ..store import open_store
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
        from ..metrics.pool import SubnetSpec
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


def _nan_scores(models):
    return [{"fid": float("nan"), "kid": None, "seconds": 0.0, "actor": ""} for _ in models]


# ---------------------------------------------------------------------- one trial
def prune_target(spec: dict, target: float, report=None, scorer=None) -> dict:
    """Prune for one target (plain PyTorch; ``report(metrics)`` and ``scorer.score(models)``
    are the only outside hooks). Returns the results row."""
    from ..store import open_store
    from ..train import common
    cfg = from_dict(spec["config"])
    pc = cfg.prune
    t0 = time.perf_counter()
    device = torch.device("cuda" if spec.get("use_gpu") and torch.cuda.is_available() else "cpu")
    run = open_store(spec["store_url"], endpoint_url=spec.get("endpoint_url") or None)
    G0, D0, source = build_teacher(cfg, run)
    base, base_name = build_base(cfg, run, G0)
    size = cfg.data.crop_size
    pr = Pruner(pc, target, G0, D0, conditional=cfg.data.kind == "aligned", size=size,
                gan_mode=cfg.model.gan_mode, device=device, seed=cfg.seed, base=base)
    from ..data.source import DataRef
    from ..data.splits import build_split
    ds = build_split(cfg, DataRef.from_spec(spec["data"]).local(), cfg.data.train_split,
                     train=True, holdout=True)
    batches = iter(common.batch_loader(ds, cfg.data.batch_size, 0, 1, cfg.seed))
    score = (lambda models: scorer(models)) if scorer is not None else _nan_scores
    history, best = [], {"fid": float("inf"), "macs": None, "step": None, "keep": None}
    log_every = max(1, min(pc.sample_every, 20))
    for step in range(1, pc.steps + 1):
        batch = next(batches)
        B = batch.get("B")
        m = pr.step(batch["A"], B)
        if step % log_every and step % pc.sample_every and step != pc.steps:
            continue
        r = pr.ratios()
        metrics = {"step": step, "target": target, **m, **{f"hard_{k}": v for k, v in r.items()}}
        if step % pc.sample_every == 0 or step == pc.steps:
            # the deterministic sub-generator and Gumbel samples, each projected to the
            # budget: the candidates for export (best FID of all of them)
            keeps = [pr.project(k) for k in pr.sample_keeps(pc.samples)]
            models = [pr_slice_cpu(pr, k) for k in keeps]
            res = score(models)
            for k, s in zip(keeps, res):
                macs = pr.keep_macs(k)
                fid = s["fid"]
                if (fid is not None and math.isfinite(fid) and fid < best["fid"]
                        and macs <= pr.budget_macs):
                    best = {"fid": float(fid), "macs": macs, "step": step, "keep": k}
            metrics.update(sampled_fids=[s["fid"] for s in res], best_fid=best["fid"],
                           best_macs=best["macs"])
        history.append(metrics)
        if report:
            report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})

    # ---- finish: the best sampled sub-generator at the budget (else the final gates
    # projected to it), fine-tuned, scored, exported
    if best["keep"] is not None:
        chosen, chosen_by = best["keep"], "sampled-fid"
    else:
        chosen, chosen_by = pr.project(hard_keep(pr.hard_gates()[0])), "final-gates"
    G_small, D_small, keep = pr.slice(chosen)
    ratios = pr.ratios()
    ratios.update(ratio_G=pr.keep_macs(chosen) / pr.full_macs_G,
                  macs_G=float(pr.keep_macs(chosen)))
    G_small, D_small = G_small.cpu().eval(), D_small.cpu()
    ft_hist = []
    ft_steps = finetune_length(cfg, len(ds))
    recipe = FinetuneRecipe.of(cfg, ft_steps)
    fts = {"fid_before": None, "fid_after": None, "export": "before",
           "why": "no fine-tune (0 steps)"}
    if ft_steps > 0:
        G_tuned, D_tuned = copy.deepcopy(G_small), copy.deepcopy(D_small)
        ft_hist = finetune(G_tuned, D_tuned, copy.deepcopy(G0), batches, recipe,
                           paired=cfg.data.kind == "aligned", gan_mode=cfg.model.gan_mode,
                           device=device)
        G_tuned, D_tuned = G_tuned.cpu().eval(), D_tuned.cpu()
        # the better of the sliced and the fine-tuned generator on the split choices are
        # made on, as the search's fine-tune chooses (never the eval split)
        before, after = score([G_small, G_tuned])
        fts = {"fid_before": before["fid"], "fid_after": after["fid"]}
        fts["export"], fts["why"] = choose_export(before["fid"], after["fid"])
        final = before
        if fts["export"] == "after":
            G_small, D_small, final = G_tuned, D_tuned, after
    else:
        final = score([G_small])[0]
        fts["fid_before"] = final["fid"]
    prefix = export_prefix(pc, target)
    unit: dict = {}     # the target's files, committed together below (manifest last)
    card = export_pruned(run, prefix, G_small, D_small, {
        "method": METHOD, "target": target, "d_target": pc.d_target,
        "teacher": cfg.model.teacher, "teacher_ngf": cfg.model.teacher_ngf,
        "teacher_config": cfg.model.teacher_config or None,
        "teacher_source": source, "fid": final["fid"], "kid": final["kid"],
        "ratio_G": ratios["ratio_G"], "ratio_D": ratios["ratio_D"],
        "gates_G": describe_gates(keep["G"], pr.G.groups),
        "gates_D": describe_gates(keep["D"], pr.D.groups) if keep["D"] else None,
        "ablation": {"use_lds": pc.use_lds, "peer_feedback": pc.peer_feedback,
                     "prune_d": pc.prune_d},
        "base_model": base_name, "budget_macs": pr.budget_macs, "chosen_by": chosen_by,
        "chosen_step": best["step"], "steps": pc.steps, "finetune_steps": ft_steps,
        "finetune": {**fts, "recipe": asdict(recipe)}}, size,
        files=unit)
    unit["history.jsonl"] = "".join(
        json.dumps(h, default=float) + "\n" for h in history + [{"finetune": ft_hist}]).encode()
    wall = time.perf_counter() - t0
    row = {"method": METHOD, "config": json.dumps(G_small.description()["widths"]),
           "macs": int(card["macs"]), "params": int(card["params"]),
           "fid": float(final["fid"]) if final["fid"] is not None else float("nan"),
           "kid": float(final["kid"]) if final["kid"] is not None else float("nan"),
           "generation": int(pc.steps), "trial_id": spec.get("trial_id", f"p{target:g}"),
           "wall_time": float(wall), "target": float(target),
           "ratio_G": float(ratios["ratio_G"]), "ratio_D": float(ratios["ratio_D"]),
           "macs_D": int(round(ratios["macs_D"])), "best_sampled_fid": float(best["fid"]),
           "export": run.url(prefix), "prefix": prefix, "use_lds": bool(pc.use_lds),
           "peer_feedback": bool(pc.peer_feedback), "prune_d": bool(pc.prune_d),
           "base_model": base_name, "budget_macs": float(pr.budget_macs),
           "chosen_by": chosen_by, "finetune_export": fts["export"],
           "fid_before_finetune": _float(fts["fid_before"]),
           "fid_after_finetune": _float(fts["fid_after"])}
    unit["row.json"] = row
    run.commit_unit(prefix, unit)
    if report:  # ('done' is reserved by Tune: it would end the trial at once)
        report({"step": pc.steps, "target": target, "finished": 1, "fid": row["fid"],
                "macs": row["macs"], "hard_ratio_G": row["ratio_G"],
                "hard_ratio_D": row["ratio_D"], "best_fid": best["fid"]})
    return row


def _float(v) -> float:
    return float(v) if v is not None else float("nan")


def pr_slice_cpu(pr: Pruner, keep) -> torch.nn.Module:
    from .slicing import slice_network
    return slice_network(pr.G, keep).cpu().eval()


def _trial(config, spec=None, scorer=None):
    """Ray Tune function trainable: one target."""
    import ray
    from ray import tune
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
    from ..context import stage_context
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
    import ray
    from ray import tune

    from ..context import keep_credentials_out_of_tune, ray_storage
    from ..resources import worker_bundle
    cfg, root, run = ctx.cfg, ctx.root, ctx.run
    G0, _, _ = build_teacher(cfg, run)  # fail early on a bad teacher
    cfg.prune.targets = resolve_targets(cfg, run, G0, build_base(cfg, run, G0)[0],
                                        ctx.placement)
    run.write_bytes(f"{STAGE}/config.yaml", cfg.to_yaml().encode())
    t0 = time.perf_counter()
    scorer_actor = None
    try:
        spec = {"config": cfg.to_dict(), **ctx.worker_spec(),
                "threads": cfg.scale.cpus_per_worker}
        n_trials = len(cfg.prune.targets)
        total_cpus = int(ray.cluster_resources().get("CPU", 1))
        if scorer != "none":
            actors = max(1, cfg.fid.num_actors)
            fid_cpus = 1.0 if total_cpus >= n_trials * cfg.scale.cpus_per_worker + actors else 0.0
            # The scorer owns the FID pool as the driver would (the driver's Inception
            # weights and data cache), so it stays on the driver's node: without a CPU it
            # could otherwise land on any node, one without the weights.
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                                  soft=False)
            cls = ray.remote(num_cpus=0, scheduling_strategy=here)(_Scorer)
            scorer_actor = cls.remote(cfg.to_dict(), ctx.data.to_spec(), root.url(),
                                      ctx.endpoint_url, scorer, fid_cpus,
                                      {k: ctx.placement.get(k) for k in
                                       ("use_gpu", "gpus", "resources")})
            ray.get(scorer_actor.score.remote([]))  # surface setup errors now
        # one trial per target: the CPUs of a worker, a GPU on a GPU placement, and
        # scale.resources
        bundle = worker_bundle(cfg.scale.cpus_per_worker, ctx.use_gpu, ctx.resources)
        trainable = tune.with_resources(
            tune.with_parameters(_trial, spec=spec, scorer=scorer_actor),
            tune.PlacementGroupFactory([bundle]))
        storage_path, fs = ray_storage(run, STAGE)
        keep_credentials_out_of_tune()
        tuner = tune.Tuner(
            trainable,
            param_space={"target": tune.grid_search([float(t) for t in cfg.prune.targets])},
            tune_config=tune.TuneConfig(max_concurrent_trials=n_trials),
            run_config=tune.RunConfig(name="tune", storage_path=storage_path,
                                      storage_filesystem=fs, verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0)))
        results = tuner.fit()
        errors = [r.error for r in results if r.error]
        if errors:
            raise PruneError(f"pruning trial failed: {one_line(errors[0], last=True)}")
    finally:
        if scorer_actor is not None:
            try:
                ray.get(scorer_actor.close.remote())
            except Exception:
                pass
            ray.kill(scorer_actor)
    rows = []
    for t in cfg.prune.targets:
        prefix = export_prefix(cfg.prune, t)
        rows.append(json.loads(run.read_unit_file(prefix, "row.json",
                                                  read_pruned_unit(run, prefix))))
    append_results(run, rows)
    summary = {"method": METHOD, "run": run.url(), "rows": rows,
               "results": run.url(RESULTS_KEY), "seconds": time.perf_counter() - t0}
    run.put_json(f"{STAGE}/summary.json", summary)
    return summary
