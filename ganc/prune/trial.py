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

Both phases write resume checkpoints every ``prune.checkpoint_every`` steps
(:mod:`ganc.prune.checkpoints`, under ``<prefix>/state/``): a target started again
continues from its newest one (the fine-tune's skips the agents) and computes what the
uninterrupted run would have; once the unit is committed they are removed. Each phase
prints a progress line every ``log_every`` steps (step/total, s/step, ETA).
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

from ..config import RunConfig, check_crops, from_dict, train_crop
from ..data.source import DataRef
from ..data.splits import build_split
from ..log import say
from ..results import choose_export
from ..store import open_store
from ..train import common
from ..train.loop import rng_state, set_rng_state
from ..weights import cpu_state
from .artifacts import export_prefix, export_pruned
from .checkpoints import Checkpoints, fingerprint, plain
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
    data: object                # the agents' training split (a Dataset; agents_crop crops)
    finetune_data: object       # the fine-tune's (the same images, train_crop crops)
    n_train: int                # images in the training split
    t0: float                   # perf_counter at the start (earlier pieces' time included)
    prefix: str = ""            # where the target is exported (prune/p<target>[-tags])

    @property
    def label(self) -> str:
        """The target's name in progress lines: ``p0.5``, ``p0.5-nolds``..."""
        return self.prefix.rsplit("/", 1)[-1]

    def batches(self, dataset, start: int) -> Iterator:
        """The training batches of ``dataset`` from global step ``start`` on (the agents'
        steps first, the fine-tune's after them): the stream of an uninterrupted run."""
        return iter(common.batch_loader(dataset, self.cfg.data.batch_size, 0, 1,
                                        self.cfg.seed, start))


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
    training splits of one target: the agents' (:func:`agents_crop` crops of the images
    at ``data.load_size``) and the fine-tune's (:func:`ganc.config.train_crop` crops)."""
    cfg = from_dict(spec["config"])
    check_crops(cfg)                # against the placed data.load_size
    t0 = time.perf_counter()
    device = torch.device("cuda" if spec.get("use_gpu") and torch.cuda.is_available() else "cpu")
    run = open_store(spec["store_url"], endpoint_url=spec.get("endpoint_url") or None)
    G0, D0, source = build_teacher(cfg, run)
    base, base_name = build_base(cfg, run, G0)
    crop = agents_crop(cfg)
    pr = Pruner(cfg.prune, target, G0, D0, conditional=cfg.data.kind == "aligned",
                size=cfg.data.crop_size, gan_mode=cfg.model.gan_mode, device=device,
                seed=cfg.seed, base=base, train_size=crop)
    root = DataRef.from_spec(spec["data"]).local()
    ds = build_split(cfg, root, cfg.data.train_split, train=True, holdout=True)
    agents_ds = ds
    if crop != train_crop(cfg.data):    # the same images and flips, another window
        agents_ds = build_split(cfg, root, cfg.data.train_split, train=True, holdout=True,
                                crop=crop)
    return TargetRun(cfg, target, spec.get("trial_id", f"p{target:g}"), run, device, G0,
                     source, base_name, pr, agents_ds, ds, len(ds), t0,
                     export_prefix(cfg.prune, target))


def agents_crop(cfg: RunConfig) -> int:
    """The side of the agents' training crops: ``prune.crop_size``, else the run's
    training crop (:func:`ganc.config.train_crop`: ``data.train_crop_size``, else
    ``data.crop_size``)."""
    return int(cfg.prune.crop_size or train_crop(cfg.data))


def crop_line(job: TargetRun) -> None:
    """One line at the start when a phase trains on crops other than the eval size
    (``[prune p0.5] agents train on 128x128 crops, the fine-tune on 256x256 crops of
    the 286 px images; evaluation at 256``)."""
    d = job.cfg.data
    agents, tune, size = agents_crop(job.cfg), train_crop(d), int(d.crop_size)
    if agents != size or tune != size:
        say(f"[prune {job.label}] agents train on {agents}x{agents} crops, the fine-tune on "
            f"{tune}x{tune} crops of the {int(d.load_size)} px images; evaluation at {size}")


class StepClock:
    """Progress lines of one phase: ``[prune p0.5] agents step 40/500 ... | 3.50 s/step |
    eta 27m10s``, the mean over the steps this process ran (sampling included)."""

    def __init__(self, label: str, phase: str, first: int, total: int, every: int):
        self.label, self.phase, self.first, self.total = label, phase, first, total
        self.every = max(1, int(every))
        self.t0 = time.perf_counter()

    def tick(self, step: int, values: dict) -> None:
        """A line after ``step`` when it is a log step (or the last)."""
        if step % self.every and step != self.total:
            return
        per_step = (time.perf_counter() - self.t0) / max(1, step - self.first)
        shown = " ".join(f"{k}={v:.4g}" for k, v in values.items()
                         if isinstance(v, (int, float)) and v is not None)
        say(f"[prune {self.label}] {self.phase} step {step}/{self.total} {shown} | "
            f"{per_step:.2f} s/step | eta {common.fmt_eta(per_step * (self.total - step))}")


def best_state(best: dict) -> dict:
    """The best sample as a checkpoint keeps it (tensors on the CPU, plain numbers)."""
    keep = best["keep"]
    return {"fid": float(best["fid"]), "macs": best["macs"] if best["macs"] is None
            else int(best["macs"]), "step": best["step"],
            "keep": None if keep is None else {g: v.detach().cpu() for g, v in keep.items()}}


def train(job: TargetRun, score: Callable, report=None, ckpt: Optional[Checkpoints] = None,
          resumed: Optional[dict] = None) -> tuple[list, dict]:
    """``prune.steps`` pruner steps: metrics (and a progress line) every ``log_every``
    steps, sampled sub-generators scored every ``prune.sample_every`` steps and at the
    last, a checkpoint when ``ckpt`` says one is due. ``resumed``: an agents' checkpoint
    to continue from. Returns (history, the best sample so far)."""
    pr, pc = job.pr, job.cfg.prune
    history, best = [], {"fid": float("inf"), "macs": None, "step": None, "keep": None}
    done = 0
    if resumed is not None:
        done = pr.load_checkpoint_state(resumed["pruner"])
        history = [dict(h) for h in resumed["history"]]
        best = dict(resumed["best"])
    batches = job.batches(job.data, done)
    if resumed is not None:     # after the loader (its start draws a seed)
        set_rng_state(resumed["rng"])
    log_every = max(1, min(pc.sample_every, 20))
    clock = StepClock(job.label, "agents", done, pc.steps, log_every)
    for step in range(done + 1, pc.steps + 1):
        batch = next(batches)
        m = pr.step(batch["A"], batch.get("B"))
        metrics = None
        if step % log_every == 0 or step % pc.sample_every == 0 or step == pc.steps:
            r = pr.ratios()
            metrics = {"step": step, "target": job.target, **m,
                       **{f"hard_{k}": v for k, v in r.items()}}
            if step % pc.sample_every == 0 or step == pc.steps:
                best, fids = sample_and_score(pr, pc.samples, score, best, step)
                metrics.update(sampled_fids=fids, best_fid=best["fid"], best_macs=best["macs"])
            history.append(metrics)
            clock.tick(step, {k: metrics[k] for k in ("loss_G", "loss_D", "hard_ratio_G",
                                                      "hard_ratio_D", "best_fid")
                              if k in metrics})
        if ckpt is not None and ckpt.due(step, pc.steps):
            ckpt.save("agents", step, {
                "pruner": pr.checkpoint_state(), "history": plain(history),
                "best": best_state(best), "rng": rng_state(),
                "wall_s": time.perf_counter() - job.t0})
        if report and metrics is not None:
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


def chosen_state(chosen: Chosen, G: nn.Module, D: nn.Module) -> dict:
    """What the agents' phase ended with as a fine-tune checkpoint keeps it: the choice
    and the sliced G and D (before their fine-tune)."""
    keep = {side: None if k is None else {g: v.detach().cpu() for g, v in k.items()}
            for side, k in chosen.keep.items()}
    return {"keep": keep, "by": chosen.by, "step": chosen.step,
            "best_fid": float(chosen.best_fid), "ratios": plain(chosen.ratios),
            "G": cpu_state(G.state_dict(), clone=True),
            "D": cpu_state(D.state_dict(), clone=True)}


def restore_chosen(pr: Pruner, state: dict) -> tuple[nn.Module, nn.Module, Chosen]:
    """(plain G, plain D, the choice) as :func:`slice_chosen` returned them, from
    :func:`chosen_state` (the nets' shapes from slicing this Pruner's, their weights
    from the checkpoint): the agents are not run again."""
    keep = state["keep"]
    G = slice_network(pr.G, keep["G"])
    D = slice_network(pr.D, keep["D"]) if keep["D"] is not None else copy.deepcopy(pr.D.net)
    G.load_state_dict(state["G"], strict=True)
    D.load_state_dict(state["D"], strict=True)
    chosen = Chosen(keep, state["by"], state["step"], float(state["best_fid"]),
                    dict(state["ratios"]))
    return G.cpu().eval(), D.cpu(), chosen


def recipe_of(job: TargetRun) -> FinetuneRecipe:
    """The fine-tune's recipe: the search winner's, over :func:`finetune_length` steps."""
    return FinetuneRecipe.of(job.cfg, finetune_length(job.cfg, job.n_train))


def finetune_and_choose(job: TargetRun, G: nn.Module, D: nn.Module, score: Callable,
                        ckpt: Optional[Checkpoints] = None, agents: Optional[dict] = None,
                        resumed: Optional[dict] = None) -> Tuned:
    """A copy of the sliced G and D fine-tuned with the search winner's recipe; the
    better of the two on the split choices are made on, as the search's fine-tune
    chooses (never the eval split). Without fine-tune steps, the sliced ones scored.
    With ``ckpt`` a checkpoint (``agents``: what the agents' phase ended with, kept in
    each) is written when due; ``resumed``: a fine-tune checkpoint to continue from."""
    cfg = job.cfg
    recipe = recipe_of(job)
    steps = recipe.steps
    if steps <= 0:
        final = score([G])[0]
        record = {"fid_before": final["fid"], "fid_after": None, "export": "before",
                  "why": "no fine-tune (0 steps)"}
        return Tuned(G, D, final, record, [], steps, recipe)
    G_tuned, D_tuned = copy.deepcopy(G), copy.deepcopy(D)
    start = resumed["finetune"] if resumed is not None else None
    done = int(start["step"]) if start is not None else 0
    # the fine-tune's batches follow the agents' in one stream
    batches = job.batches(job.finetune_data, cfg.prune.steps + done)

    def save(step: int, state: dict) -> None:
        ckpt.save("finetune", step, {"agents": agents, "finetune": state,
                                     "wall_s": time.perf_counter() - job.t0})

    clock = StepClock(job.label, "fine-tune", done, steps, cfg.finetune.log_every)
    history = finetune(G_tuned, D_tuned, copy.deepcopy(job.teacher), batches, recipe,
                       paired=cfg.data.kind == "aligned", gan_mode=cfg.model.gan_mode,
                       device=job.device, start=start,
                       checkpoint_every=ckpt.every if ckpt is not None else 0,
                       checkpoint=save if ckpt is not None and agents is not None else None,
                       progress=clock.tick)
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
        "agents_crop_size": agents_crop(cfg), "train_crop_size": train_crop(cfg.data),
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
    are the only outside hooks), continuing from the target's newest checkpoint when
    there is one (:mod:`ganc.prune.checkpoints`; one line when it was made with another
    config); its checkpoints are removed once its unit is committed. Returns the results
    row."""
    job = open_target(spec, target)
    crop_line(job)
    score = scorer if scorer is not None else nan_scores
    prefix = job.prefix
    ckpt = Checkpoints(job.run, prefix, job.cfg.prune.checkpoint_every, job.label)
    resumed = ckpt.resume(fingerprint(job.cfg, target, recipe_of(job), job.teacher))
    if resumed is not None:
        job.t0 -= float(resumed.get("wall_s", 0.0))   # the earlier pieces' time
    if resumed is None or resumed["phase"] == "agents":
        history, best = train(job, score, report, ckpt, resumed)
        G, D, chosen = slice_chosen(job.pr, best)
        resumed = None
    else:                       # in the fine-tune: the agents' phase is done
        agents = resumed["agents"]
        history, best = [dict(h) for h in agents["history"]], dict(agents["best"])
        G, D, chosen = restore_chosen(job.pr, agents["chosen"])
    agents = {"history": plain(history), "best": best_state(best),
              "chosen": chosen_state(chosen, G, D)} if ckpt.every > 0 else None
    tuned = finetune_and_choose(job, G, D, score, ckpt, agents, resumed)
    unit: dict = {}     # the target's files, committed together below (manifest last)
    card = export_pruned(job.run, prefix, tuned.G, tuned.D, model_card(job, chosen, tuned),
                         job.cfg.data.crop_size, files=unit)
    unit["history.jsonl"] = "".join(json.dumps(h, default=float) + "\n"
                                    for h in history + [{"finetune": tuned.history}]).encode()
    row = results_row(job, chosen, tuned, card, prefix)
    unit["row.json"] = row
    job.run.commit_unit(prefix, unit)
    ckpt.clear()        # the unit is the target's result: nothing left to resume
    if report:  # ('done' is reserved by Tune: it would end the trial at once)
        report({"step": job.cfg.prune.steps, "target": target, "finished": 1,
                "fid": row["fid"], "macs": row["macs"], "hard_ratio_G": row["ratio_G"],
                "hard_ratio_D": row["ratio_D"], "best_fid": best["fid"]})
    return row


__all__ = ["METHOD", "TargetRun", "Chosen", "Tuned", "StepClock", "prune_target", "open_target",
           "agents_crop", "crop_line", "train", "sample_and_score", "slice_chosen",
           "restore_chosen", "recipe_of", "finetune_and_choose", "model_card", "results_row",
           "nan_scores", "pr_slice_cpu"]
