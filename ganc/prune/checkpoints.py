"""Resume checkpoints of one prune target: its agents' phase and its fine-tune.

Under the target's prefix (``prune/p<target>[-tags]``,
:func:`~ganc.prune.artifacts.export_prefix`)::

    <prefix>/state/inputs.json                  the fingerprint the checkpoints belong to
    <prefix>/state/latest.json                  {"phase", "step", "key"} of the newest one
    <prefix>/state/agents/step-00000300.pt      the agents' phase after its step 300
    <prefix>/state/finetune/step-00000100.pt    the fine-tune after its step 100

Every ``prune.checkpoint_every`` steps of either phase, and at each phase's last step, the
checkpoint file is written first (the store writes a temporary key and moves it onto the
key), then ``latest.json`` is moved to it, then the file it named before is removed: a job
killed at any moment leaves ``latest.json`` naming a complete checkpoint (or none yet).
The files hold tensors, numbers, strings and containers only and are read with
``weights_only=True``.

An agents' checkpoint holds the :class:`~ganc.prune.pruner.Pruner`'s modules, optimizers,
generators and peer summaries, the history and the best sample so far and torch's random
state; a fine-tune checkpoint holds what the agents' phase ended with (history, best
sample, the choice :func:`~ganc.prune.trial.slice_chosen` made and the sliced G and D), so
a resume in the fine-tune never reruns the agents, plus the fine-tune's own state
(:func:`~ganc.prune.finetuning.finetune`). The training batches are those of the
uninterrupted run (the data loader starts at the step's batch,
:class:`~ganc.train.schedule.GlobalBatchSampler`), so a resumed target computes what the
uninterrupted one would have.

A target resumes only the work of the same target, config and original generator
(:func:`fingerprint`, checked by :func:`ganc.resume.check_resume` against
``inputs.json``: one line naming the changed fields otherwise). Once the target's unit is
committed ``state/`` is removed: a finished target has nothing left to resume, and its
unit is what later stages read.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Optional

import torch
import torch.nn as nn

from ..log import say
from ..resume import check_resume, resume_inputs
from ..store import StoreError

STATE = "state"
PHASES = ("agents", "finetune")


def weights_sha256(net: nn.Module) -> str:
    """A hash of a network's state dict (names, shapes, dtypes and values)."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def plain(obj):
    """``obj`` as plain JSON values (numpy or torch scalars become floats; NaN and inf
    stay): what a checkpoint may hold beside tensors."""
    return json.loads(json.dumps(obj, default=float))


def fingerprint(cfg, target: float, recipe, teacher: nn.Module) -> dict:
    """What a target's checkpoints must have been made with: the config fields of the
    prune's resume sections (``prune.targets`` replaced by this target), the fine-tune
    recipe and the original generator's weights."""
    fields = resume_inputs(cfg, "prune", **{
        "prune.target": float(target), "prune.finetune_recipe": asdict(recipe),
        "prune.teacher_sha256": weights_sha256(teacher)})
    fields.pop("prune.targets", None)
    return plain(fields)


class Checkpoints:
    """The resume checkpoints of the target exported at ``prefix`` (module docstring);
    ``every``: ``prune.checkpoint_every`` (0: none written, an existing one still read)."""

    def __init__(self, run, prefix: str, every: int, label: str = ""):
        self.run, self.prefix, self.every = run, prefix, int(every)
        self.root = f"{prefix}/{STATE}"
        self.label = label or prefix.rsplit("/", 1)[-1]
        self._last: Optional[str] = None        # the key latest.json names

    @property
    def latest(self) -> str:
        return f"{self.root}/latest.json"

    def due(self, step: int, last: int) -> bool:
        """Whether a checkpoint is written after ``step`` of a phase of ``last`` steps."""
        return self.every > 0 and (step % self.every == 0 or step == last)

    def resume(self, fields: dict) -> Optional[dict]:
        """The newest checkpoint (``{"phase", "step", ...}``), or None; one line when it
        was made with other inputs than ``fields`` (starting afresh records them)."""
        found = self.run.exists(self.latest)
        if not found and self.every <= 0:
            return None
        check_resume(self.run, "prune", fields, found,
                     f"remove {self.run.url(self.root)} to start target {self.label} afresh "
                     "(or rerun with --restart-from prune, ganc compress) or use a new "
                     "--run-id", record=f"{self.root}/inputs.json")
        if not found:
            return None
        latest = self.run.get_json(self.latest)
        state = self.run.get_torch(latest["key"])
        if state.get("phase") not in PHASES or int(state.get("step", -1)) != int(latest["step"]):
            raise StoreError(f"{self.run.url(latest['key'])} is not the checkpoint "
                             f"{self.run.url(self.latest)} names")
        self._last = latest["key"]
        phase = "" if state["phase"] == "agents" else "the fine-tune "
        say(f"[prune {self.label}] continuing {phase}from step {state['step']} "
            f"(checkpoint {latest['key']})")
        return state

    def save(self, phase: str, step: int, state: dict) -> str:
        """Write the checkpoint of ``phase`` after ``step``, move ``latest.json`` to it,
        remove the one before; returns its key."""
        key = f"{self.root}/{phase}/step-{int(step):08d}.pt"
        self.run.put_torch(key, {**state, "phase": phase, "step": int(step)})
        self.run.put_json(self.latest, {"phase": phase, "step": int(step), "key": key})
        old, self._last = self._last, key
        if old and old != key and self.run.exists(old):
            self.run.rm(old)
        return key

    def clear(self) -> None:
        """Remove every checkpoint of the target (its unit is committed)."""
        if self.run.exists(self.root):
            self.run.rm(self.root, recursive=True)
        self._last = None


__all__ = ["STATE", "PHASES", "Checkpoints", "fingerprint", "weights_sha256", "plain"]
