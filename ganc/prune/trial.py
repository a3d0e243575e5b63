"""One pruning target in plain PyTorch (no Ray here): ``report(metrics)`` and
``score(models)`` are the only outside hooks (Ray Tune and the scorer actor, wired in
:mod:`ganc.prune.driver`).

:func:`prune_target` runs its steps in order: :func:`open_target` (config, store, the
original generator, the network pruned, the :class:`~ganc.prune.pruner.Pruner`, the
training batches); :func:`train` (``prune.steps`` steps, scoring sampled sub-generators
every ``prune.sample_every``); :func:`slice_chosen` (the best sample at the budget, else
the final gates); :func:`finetune_and_choose` (a fine-tuned copy, kept only when it
scores better, :func:`ganc.results.choose_export`); then the target's unit: weights,
deployed files, model card (:func:`model_card`), ``history.jsonl`` and its results row
(:func:`results_row`), committed together.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Optional

import torch
import torch.nn as nn

from ..config import RunConfig, from_dict
from ..data.source import DataRef
from ..data.splits import build_split
from ..results import choose_export
from ..store import open_store
from ..train import common
from .artifacts import export_prefix, export_pruned
from .finetuning import FinetuneRecipe, finetune
from .models import build_base, build_teacher
from .pruner import Pruner, describe_gates
from .slicing import hard_keep, slice_network
from .targets import finetune_length

METHOD = "prune-lds"


@dataclass
class TargetRun:
    """What the steps of one target share."""
    cfg: RunConfig
    target: float
    trial_id: str
    run: object                 # the run's store
    device: torch.device
    teacher: nn.Module          # the original generator: reference and distillation
    source: str                 # where the teacher came from
    base_name: str              # the network pruned: teacher | mobile
    pr: Pruner
    batches: Iterator
    n_train: int                # images in the training split
    t0: float                   # perf_counter at the start


@dataclass
class Chosen:
    """The sub-network exported: kept channels of G and D, why, and its MACs ratios."""
    keep: dict
    by: str                     # sampled-fid | final-gates
    step: Optional[int]         # the step of the best sample (None: final gates)
    best_fid: float             # the best sampled FID (inf: none scored)
    ratios: dict


@dataclass
class Tuned:
    """The generator and discriminator exported after the fine-tune's choice."""
    G: nn.Module
    D: nn.Module
    final: dict                 # G's scores on the choice split
    record: dict                # fid_before, fid_after, export, why
    history: list
    steps: int
    recipe: FinetuneRecipe


def nan_scores(models) -> list:
    """Scores of models no scorer scores (``scorer: none``)."""
    return [{"fid": float("nan"), "kid": None, "seconds": 0.0, "actor": ""} for _ in models]


def pr_slice_cpu(pr: Pruner, keep) -> nn.Module:
    """The plain sub-generator of ``keep``, on the CPU in eval mode (as it is scored)."""
    return slice_network(pr.G, keep).cpu().eval()


def open_target(spec: dict, target: float) -> TargetRun:
    """The store, the original generator, the network pruned, its Pruner and the
    training batches of one target."""
    cfg = from_dict(spec["config"])
    t0 = time.perf_counter()
    device = torch.device("cuda" if spec.get("use_gpu") and torch.cuda.is_available() else "cpu")
    run = open_store(spec["store_url"], endpoint_url=spec.get("endpoint_url") or None)
    G0, D0, source = build_teacher(cfg, run)
    base, base_name = build_base(cfg, run, G0)
    pr = Pruner(cfg.prune, target, G0, D0, conditional=cfg.data.kind == "aligned",
                size=cfg.data.crop_size, gan_mode=cfg.model.gan_mode, device=device,
                seed=cfg.seed, base=base)
    ds = build_split(cfg, DataRef.from_spec(spec["data"]).local(), cfg.data.train_split,
                     train=True, holdout=True)
    batches = iter(common.batch_loader(ds, cfg.data.batch_size, 0, 1, cfg.seed))
    return TargetRun(cfg, target, spec.get("trial_id", f"p{target:g}"), run, device, G0,
                     source, base_name, pr, batches, len(ds), t0)


def train(job: TargetRun, score: Callable, report=None) -> tuple[list, dict]:
    """``prune.steps`` pruner steps: metrics every ``log_every`` steps, sampled
    sub-generators scored every ``prune.sample_every`` steps and at the last. Returns
    (history, the best sample so far)."""
    pr, pc = job.pr, job.cfg.prune
    history, best = [], {"fid": float("inf"), "macs": None, "step": None, "keep": None}
    log_every = max(1, min(pc.sample_every, 20))
    for step in range(1, pc.steps + 1):
        batch = next(job.batches)
        m = pr.step(batch["A"], batch.get("B"))
        if step % log_every and step % pc.sample_every and step != pc.steps:
            continue
        r = pr.ratios()
        metrics = {"step": step, "target": job.target, **m,
                   **{f"hard_{k}": v for k, v in r.items()}}
        if step % pc.sample_every == 0 or step == pc.steps:
            best, fids = sample_and_score(pr, pc.samples, score, best, step)
            metrics.update(sampled_fids=fids, best_fid=best["fid"], best_macs=best["macs"])
        history.append(metrics)
        if report:
            report({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    return history, best


def sample_and_score(pr: Pruner, n: int, score: Callable, best: dict, step: int
                     ) -> tuple[dict, list]:
    """The deterministic sub-generator and Gumbel samples, each projected to the budget:
    the candidates for export (best FID of all of them). Returns (the best so far, the
    samples' FIDs)."""
    keeps = [pr.project(k) for k in pr.sample_keeps(n)]
    res = score([pr_slice_cpu(pr, k) for k in keeps])
    for k, s in zip(keeps, res):
        macs = pr.keep_macs(k)
        fid = s["fid"]
        if (fid is not None and math.isfinite(fid) and fid < best["fid"]
                and macs <= pr.budget_macs):
            best = {"fid": float(fid), "macs": macs, "step": step, "keep": k}
    return best, [s["fid"] for s in res]


def slice_chosen(pr: Pruner, best: dict) -> tuple[nn.Module, nn.Module, Chosen]:
    """(plain G, plain D, the choice) of the best sampled sub-generator at the budget,
    else of the final gates projected to it."""
    if best["keep"] is not None:
        keep_G, by = best["keep"], "sampled-fid"
    else:
        keep_G, by = pr.project(hard_keep(pr.hard_gates()[0])), "final-gates"
    G, D, keep = pr.slice(keep_G)
    ratios = pr.ratios()
    ratios.update(ratio_G=pr.keep_macs(keep_G) / pr.full_macs_G,
                  macs_G=float(pr.keep_macs(keep_G)))
    return G.cpu().eval(), D.cpu(), Chosen(keep, by, best["step"], best["fid"], ratios)


def finetune_and_choose(job: TargetRun, G: nn.Module, D: nn.Module, score: Callable
                        ) -> Tuned:
    """A copy of the sliced G and D fine-tuned with the search winner's recipe; the
    better of the two on the split choices are made on, as the search's fine-tune
    chooses (never the eval split). Without fine-tune steps, the sliced ones scored."""
    cfg = job.cfg
    steps = finetune_length(cfg, job.n_train)
    recipe = FinetuneRecipe.of(cfg, steps)
    if steps <= 0:
        final = score([G])[0]
        record = {"fid_before": final["fid"], "fid_after": None, "export": "before",
                  "why": "no fine-tune (0 steps)"}
        return Tuned(G, D, final, record, [], steps, recipe)
    G_tuned, D_tuned = copy.deepcopy(G), copy.deepcopy(D)
    history = finetune(G_tuned, D_tuned, copy.deepcopy(job.teacher), job.batches, recipe,
                       paired=cfg.data.kind == "aligned", gan_mode=cfg.model.gan_mode,
                       device=job.device)
    G_tuned, D_tuned = G_tuned.cpu().eval(), D_tuned.cpu()
    before, after = score([G, G_tuned])
    record = {"fid_before": before["fid"], "fid_after": after["fid"]}
    record["export"], record["why"] = choose_export(before["fid"], after["fid"])
    if record["export"] == "after":
        return Tuned(G_tuned, D_tuned, after, record, history, steps, recipe)
    return Tuned(G, D, before, record, history, steps, recipe)


def model_card(job: TargetRun, chosen: Chosen, tuned: Tuned) -> dict:
    """The prune's part of the model card (:func:`export_pruned` adds the architecture,
    MACs, params and the deployed files)."""
    cfg, pc, pr = job.cfg, job.cfg.prune, job.pr
    keep = chosen.keep
    return {
        "method": METHOD, "target": job.target, "d_target": pc.d_target,
        "teacher": cfg.model.teacher, "teacher_ngf": cfg.model.teacher_ngf,
        "teacher_config": cfg.model.teacher_config or None,
        "teacher_source": job.source, "fid": tuned.final["fid"], "kid": tuned.final["kid"],
        "ratio_G": chosen.ratios["ratio_G"], "ratio_D": chosen.ratios["ratio_D"],
        "gates_G": describe_gates(keep["G"], pr.G.groups),
        "gates_D": describe_gates(keep["D"], pr.D.groups) if keep["D"] else None,
        "ablation": {"use_lds": pc.use_lds, "peer_feedback": pc.peer_feedback,
                     "prune_d": pc.prune_d},
        "base_model": job.base_name, "budget_macs": pr.budget_macs, "chosen_by": chosen.by,
        "chosen_step": chosen.step, "steps": pc.steps, "finetune_steps": tuned.steps,
        "finetune": {**tuned.record, "recipe": asdict(tuned.recipe)}}


def results_row(job: TargetRun, chosen: Chosen, tuned: Tuned, card: dict, prefix: str
                ) -> dict:
    """The target's row of the results table (``method='prune-lds'``)."""
    pc, final, ratios, fts = job.cfg.prune, tuned.final, chosen.ratios, tuned.record
    wall = time.perf_counter() - job.t0
    return {"method": METHOD, "config": json.dumps(tuned.G.description()["widths"]),
            "macs": int(card["macs"]), "params": int(card["params"]),
            "fid": _float(final["fid"]), "kid": _float(final["kid"]),
            "generation": int(pc.steps), "trial_id": job.trial_id,
            "wall_time": float(wall), "target": float(job.target),
            "ratio_G": float(ratios["ratio_G"]), "ratio_D": float(ratios["ratio_D"]),
            "macs_D": int(round(ratios["macs_D"])), "best_sampled_fid": float(chosen.best_fid),
            "export": job.run.url(prefix), "prefix": prefix, "use_lds": bool(pc.use_lds),
            "peer_feedback": bool(pc.peer_feedback), "prune_d": bool(pc.prune_d),
            "base_model": job.base_name, "budget_macs": float(job.pr.budget_macs),
            "chosen_by": chosen.by, "finetune_export": fts["export"],
            "fid_before_finetune": _float(fts["fid_before"]),
            "fid_after_finetune": _float(fts["fid_after"])}


def _float(v) -> float:
    return float(v) if v is not None else float("nan")


def prune_target(spec: dict, target: float, report=None, scorer=None) -> dict:
    """Prune for one target (plain PyTorch; ``report(metrics)`` and ``scorer(models)``
    are the only outside hooks). Returns the results row."""
    job = open_target(spec, target)
    score = scorer if scorer is not None else nan_scores
    history, best = train(job, score, report)
    G, D, chosen = slice_chosen(job.pr, best)
    tuned = finetune_and_choose(job, G, D, score)
    prefix = export_prefix(job.cfg.prune, target)
    unit: dict = {}     # the target's files, committed together below (manifest last)
    card = export_pruned(job.run, prefix, tuned.G, tuned.D, model_card(job, chosen, tuned),
                         job.cfg.data.crop_size, files=unit)
    unit["history.jsonl"] = "".join(json.dumps(h, default=float) + "\n"
                                    for h in history + [{"finetune": tuned.history}]).encode()
    row = results_row(job, chosen, tuned, card, prefix)
    unit["row.json"] = row
    job.run.commit_unit(prefix, unit)
    if report:  # ('done' is reserved by Tune: it would end the trial at once)
        report({"step": job.cfg.prune.steps, "target": target, "finished": 1,
                "fid": row["fid"], "macs": row["macs"], "hard_ratio_G": row["ratio_G"],
                "hard_ratio_D": row["ratio_D"], "best_fid": best["fid"]})
    return row


__all__ = ["METHOD", "TargetRun", "Chosen", "Tuned", "prune_target", "open_target", "train",
           "sample_and_score", "slice_chosen", "finetune_and_choose", "model_card",
           "results_row", "nan_scores", "pr_slice_cpu"]
