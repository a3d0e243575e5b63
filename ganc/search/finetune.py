"""Fine-tune the chosen sub-network: the supernet distillation loop with a fixed config.

``finetune(cfg, store)`` runs ``ganc.train.supernet.supernet_loop`` (Ray Train, or one
local process with ``runner="local"``) as the stage ``finetune`` with

- a one-config search space (the chosen config at every position), so the loop's
  sampler always trains that sub-network;
- the model / distillation settings the supernet was trained with (its saved config),
  and ``finetune.epochs`` / ``epochs_decay`` / ``steps`` / ``lr`` / ``checkpoint_every`` /
  ``log_every``, this run's ``data.batch_size`` and training crop
  (``data.train_crop_size``; scoring stays at ``data.crop_size``);
- starting weights (student, feature mappings, discriminator) from
  ``supernet/final.pt``, handed to the loop as its step-0 resume point
  (``finetune/init/state.pt`` + ``finetune/latest.json``), so an interrupted fine-tune
  continues from its last checkpoint like any other stage.

Then the sub-network is scored before and after on the split choices are made on (the
search split held out of the training data, ``data.search_split``; else the eval split),
with the same extractor and real statistics, the better of the two is chosen for export
(:func:`choose_export`) and ``finetune/result.json`` records both FIDs, the split, the
choice and why. ``finetune.enabled: false`` (a preset whose reference recipe does not
fine-tune, e.g. horse2zebra) trains nothing and records that the supernet's slice is
exported.
"""
from __future__ import annotations

import copy
from typing import Optional

from ..config import RunConfig, check_train_crop, from_dict, train_crop, validate
from ..context import stage_context
from ..data.splits import choice_split
from ..errors import ConfigError
from ..train.launch import run_stage, schedule_of, train_cpus
from ..train.supernet import supernet_loop
from .inputs import eval_split_of
from ..results import choose_export
from ..resume import check_resume, resume_inputs
from ..space import ChannelConfig, SearchSpace
from ..subnets import chosen_config, load_supernet, subnet_from

STAGE = "finetune"


def finetune_config(cfg: RunConfig, sup: dict) -> RunConfig:
    """The supernet's own training config with this run's store, scale and fine-tune."""
    base = from_dict(sup["config"]) if isinstance(sup.get("config"), dict) else copy.deepcopy(cfg)
    ft = cfg.finetune
    validate(ft, "finetune.")
    base.store = copy.deepcopy(cfg.store)
    base.scale = copy.deepcopy(cfg.scale)
    base.fid = copy.deepcopy(cfg.fid)
    base.finetune = copy.deepcopy(ft)
    base.data.batch_size = int(cfg.data.batch_size)
    # this run's training crop (its fingerprint holds it), cut from the supernet's images
    base.data.train_crop_size = int(cfg.data.train_crop_size)
    check_train_crop(base)
    d = base.distill
    d.epochs, d.epochs_decay, d.steps = int(ft.epochs), int(ft.epochs_decay), int(ft.steps)
    d.lr = float(ft.lr)
    d.checkpoint_every, d.log_every = int(ft.checkpoint_every), int(ft.log_every)
    d.sampler, d.eval_every = "uniform", 0
    base.model.student = sup.get("netG", base.model.student)
    base.model.student_ngf = int(sup.get("ngf", base.model.student_ngf))
    return base


def _seed_start(run, sup: dict) -> None:
    """Step-0 resume point holding the supernet's trained weights (written once)."""
    if run.exists(f"{STAGE}/latest.json"):
        return
    nets = {"student": sup["state_dict"]}
    if "distiller" in sup:
        nets["distiller"] = sup["distiller"]
    if "netD" in sup:
        nets["D"] = sup["netD"]
    key = f"{STAGE}/init/state.pt"
    run.put_torch(key, {"step": 0, "nets": nets, "opts": {}, "config": sup.get("config", {})})
    run.put_json(f"{STAGE}/latest.json", {"step": 0, "key": key})


def finetune(cfg: RunConfig, store=None, *, config: Optional[str] = None,
             runner: Optional[str] = None, score: bool = True, ctx=None) -> dict:
    """Fine-tune the chosen sub-network; returns ``finetune/result.json``'s content
    (``ctx``: the pipeline's run context, else one is opened)."""

    local = runner == "local"
    with stage_context(cfg, store, ray=not local, num_cpus=train_cpus(cfg),
                       ctx=ctx) as ctx:
        run = ctx.run
        cfg_str = chosen_config(run, config)
        sup = load_supernet(run)
        space: SearchSpace = sup["space"]
        space.validate(cfg_str)
        if not sup.get("teacher"):
            raise ConfigError(f"{run.url('supernet/final.pt')} names no teacher to distil from")
        if not ctx.cfg.finetune.enabled:
            result = {"config": cfg_str, "enabled": False, "steps": 0, "skipped": True,
                      "export": "before",
                      "why": "finetune.enabled is false: the supernet's slice is exported"}
            run.put_json(f"{STAGE}/result.json", result)
            return result
        ft_cfg = finetune_config(ctx.cfg, sup)
        total = schedule_of(ctx, ft_cfg, STAGE, 1 if local else ft_cfg.scale.workers,
                            "finetune").total_steps
        # a fine-tune is resumed or reused only as the fine-tune it was (one line)
        check_resume(run, STAGE, resume_inputs(
            ctx.cfg, STAGE, **{"finetune.subnet_config": cfg_str,
                               "supernet.sha256": sup["sha256"]}),
            run.exists(f"{STAGE}/latest.json") or run.exists(f"{STAGE}/final.pt"),
            f"remove {run.url(STAGE)} (or rerun with --restart-from finetune, ganc compress) "
            "or use a new --run-id")
        done = _finished(run, cfg_str, space, total)
        if done is not None:
            return done
        _seed_start(run, sup)
        summary = run_stage(STAGE, supernet_loop, ctx, ft_cfg, runner=runner,
                            section="finetune",
                            extra_spec={"search_space": _one(cfg_str, space.family).to_dict(),
                                        "teacher": sup["teacher"]})
        result = {"config": cfg_str, "enabled": True, "steps": int(summary["step"]),
                  "final": run.url(f"{STAGE}/final.pt"), "skipped": bool(summary["skipped"]),
                  "train_crop_size": train_crop(ft_cfg.data)}
        if score:
            result.update(score_before_after(ctx, ft_cfg, sup, cfg_str))
            crit = ctx.cfg.search.criterion
            result["criterion"] = crit
            result["export"], result["why"] = choose_export(
                result[f"{crit}_before"], result[f"{crit}_after"], crit)
        else:
            result["export"], result["why"] = "after", "not scored (score=False)"
        run.put_json(f"{STAGE}/result.json", result)
        return result


def _finished(run, cfg_str: str, space: SearchSpace, total: int) -> Optional[dict]:
    """The recorded result when this fine-tune finished already (``skipped``), else None;
    one line when ``finetune/final.pt`` holds another fine-tune."""
    if run.exists(f"{STAGE}/result.json"):
        done = run.get_json(f"{STAGE}/result.json")
        if done.get("config") == cfg_str and done.get("enabled", True) and \
                int(done.get("steps", -1)) >= total:
            return {**done, "skipped": True}
    if run.exists(f"{STAGE}/final.pt"):
        old = run.get_torch(f"{STAGE}/final.pt")
        if old.get("search_space") != _one(cfg_str, space.family).to_dict() or \
                int(old.get("step", -1)) < total:
            raise ConfigError(f"{run.url(STAGE + '/final.pt')} holds another fine-tune "
                              f"(config or steps differ); remove {run.url(STAGE)} first")
    return None


def _one(cfg_str: str, family: str = "resnet") -> SearchSpace:
    return SearchSpace("finetune-" + cfg_str, tuple((w,) for w in ChannelConfig.parse(cfg_str)),
                       family)


def score_before_after(ctx, cfg: RunConfig, sup: dict, cfg_str: str) -> dict:
    """FID/KID of the sub-network sliced from the supernet and from the fine-tuned one, on
    the split choices are made on (``fid_split``: ``search``, or the eval split)."""
    from ..metrics.pool import LocalPool, SubnetSpec  # deferred: torchvision, torch_fidelity
    run = ctx.run
    pool = LocalPool(eval_split_of(cfg, ctx), store=ctx.root, fid=cfg.fid)
    # both batch-norm recalibrated as the search scored them (SPADE; a no-op without BN)
    pool.register_model("before", subnet_from(run, "supernet/final.pt", cfg_str),
                        recalibrate=True)
    pool.register_model("after", subnet_from(run, f"{STAGE}/final.pt", cfg_str),
                        recalibrate=True)
    # a model whose outputs are not finite scores FID inf and is recorded as failed: it
    # loses the comparison (choose_export), it does not stop the stage
    before, after = pool.score([SubnetSpec("before"), SubnetSpec("after")],
                               failures="record")
    out = {"fid_before": before.fid, "fid_after": after.fid,
           "kid_before": before.kid_mean, "kid_after": after.kid_mean,
           "fid_split": choice_split(cfg.data), "eval_images": after.n_fake}
    if before.miou is not None or after.miou is not None:
        out.update(miou_before=before.miou if before.status == "ok" else None,
                   miou_after=after.miou if after.status == "ok" else None,
                   pixel_acc_before=before.pixel_acc, pixel_acc_after=after.pixel_acc)
    return out


__all__ = ["finetune", "finetune_config", "chosen_config", "choose_export", "subnet_from",
           "STAGE"]
