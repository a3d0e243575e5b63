"""The step loop shared by the teacher and supernet workers: the LR schedule of
:mod:`ganc.train.schedule`, progress lines, metric reports and checkpoints every
``checkpoint_every`` steps, resume."""
from __future__ import annotations

import random
import time
from typing import Callable, Optional

import torch

from ..config import RunConfig
from ..data.source import DataRef
from ..data.splits import build_split
from . import common
from .schedule import Schedule
from .session import Session


def load_modules(modules: dict, opts: dict, state: Optional[dict]) -> int:
    """Load a checkpoint's nets and optimizers in place; returns the step it holds."""
    if not state:
        return 0
    for name, mod in modules.items():
        if name in state.get("nets", {}):
            mod.load_state_dict(state["nets"][name], strict=True)
    for name, opt in opts.items():
        if name in state.get("opts", {}):
            opt.load_state_dict(state["opts"][name])
    return int(state.get("step", 0))


def snapshot(step: int, modules: dict, opts: dict, config: dict, extra: Optional[dict] = None):
    """A weights-only-loadable checkpoint: tensors, numbers, strings and containers."""
    return {"step": int(step),
            "nets": {k: {n: t.detach().cpu() for n, t in m.state_dict().items()}
                     for k, m in modules.items()},
            "opts": {k: o.state_dict() for k, o in opts.items()},
            "config": config, **(extra or {})}


def run_steps(sess: Session, *, schedule: Schedule, start: int, checkpoint_every: int,
              log_every: int, lr, opts: dict, batches, train_step: Callable,
              make_state: Callable[[int], dict], eval_every: int = 0,
              evaluate: Optional[Callable[[int], dict]] = None) -> int:
    """Run steps ``start`` .. ``schedule.total_steps``; returns the last step.

    ``lr``: the base LR of every optimizer, or ``{optimizer name: base LR}`` (SPADE's TTUR);
    ``batches`` yields this rank's part of each step's global batch;
    ``train_step(step, batch) -> {loss name: float}``; ``make_state(step)`` the checkpoint;
    ``evaluate(step) -> metrics`` (rank 0; its metrics are added to that report).
    """
    meter = common.Meter()
    stage = sess.stage
    steps = schedule.total_steps
    step = start
    t_start = time.perf_counter()
    for batch in batches:
        if step >= steps:
            break
        factor = schedule.lr_factor(step)
        for name, opt in opts.items():
            common.set_lr([opt], lr[name] if isinstance(lr, dict) else lr, factor)
        losses = train_step(step, batch)
        step += 1
        meter.add(losses, schedule.worker_batch)
        sess.tick(step, batch)
        at_log = step % max(1, log_every) == 0 or step == steps
        at_ckpt = step % max(1, checkpoint_every) == 0 or step == steps
        # the same on every rank (reports are collective); only the chief evaluates
        at_eval = eval_every > 0 and (step % eval_every == 0 or step == steps)
        if not (at_log or at_ckpt or at_eval):
            continue
        metrics = meter.pop()
        metrics = common.mean_across_ranks(metrics)
        metrics["lr"] = next(iter(opts.values())).param_groups[0]["lr"] if opts else 0.0
        metrics["epoch"] = schedule.epoch_of(step)
        if at_eval and sess.is_chief and evaluate is not None:
            metrics.update(evaluate(step))
        if sess.is_chief:
            common.say(common.progress_line(stage, step, steps, metrics, sess.world))
            if sess.log is not None:
                sess.log.scalars(step, metrics)
        state = make_state(step) if at_ckpt and sess.is_chief else None
        sess.report(step, metrics, checkpoint=at_ckpt, state=state)
    if sess.is_chief:
        common.say(f"[{stage}] {step - start} steps in {time.perf_counter() - t_start:.1f}s")
    return step


def train_batches(sess: Session, cfg: RunConfig, spec: dict, start: int):
    """(schedule, this rank's DataLoader from step ``start``) of a training stage."""
    schedule = Schedule.from_dict(spec["schedule"])
    ds = build_split(cfg, DataRef.from_spec(spec["data"]).local(), cfg.data.train_split,
                     train=True, holdout=spec["stage"] != "teacher")
    if len(ds) != schedule.dataset_size:
        raise common.ConfigError(f"the training split has {len(ds)} images on this node, the "
                                 f"driver counted {schedule.dataset_size}")
    loader = common.batch_loader(ds, schedule.global_batch, sess.rank, sess.world, cfg.seed,
                                 start, schedule.total_steps,
                                 num_workers=common.loader_workers(cfg.scale.cpus_per_worker),
                                 pin_memory=sess.device.type == "cuda")
    return schedule, loader


def rng_state() -> dict:
    """torch's global random state (and CUDA's, when in use): what a checkpoint keeps so a
    resumed loop draws the numbers the uninterrupted one would have."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "cuda": list(cuda)}


def set_rng_state(state: Optional[dict]) -> None:
    """Restore what :func:`rng_state` returned (nothing for None)."""
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
