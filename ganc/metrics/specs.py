"""What the FID pool scores and what it answers: a :class:`SubnetSpec` (a registered model
and, for a supernet, a channel config), the :class:`EvalSplit` it is scored on (generator
inputs and real targets, label maps for the mIoU) and one :class:`Score` per spec."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .fid import RealStats
from .sources import FolderSource


@dataclass(frozen=True)
class SubnetSpec:
    """What to score: a registered model and, for a supernet, a channel config."""

    model: str
    config: Optional[str] = None        # '16_16_32_16_32_32_16_16'; None: run it as is
    tag: str = ""                       # carried to the Score unchanged

    def __post_init__(self):
        if self.config is not None and not isinstance(self.config, str):
            object.__setattr__(self, "config", str(self.config))   # ChannelConfig -> str

    def __str__(self) -> str:
        return f"{self.model}[{self.config}]" if self.config else self.model


@dataclass
class Score:
    index: int                          # position of the spec in the list given to score()
    spec: SubnetSpec
    fid: float
    kid_mean: Optional[float] = None
    kid_std: Optional[float] = None
    n_fake: int = 0
    miou: Optional[float] = None        # ESPNet-CamVid mIoU (label-map data only)
    pixel_acc: Optional[float] = None
    seconds: float = 0.0                # scoring time inside the actor
    actor: str = ""                     # who scored it ('local' in-process)
    attempts: int = 1                   # 2+ when an actor died while scoring it
    status: str = "ok"                  # 'failed': the spec's own scoring failed (error)
    error: str = ""

    def to_dict(self) -> dict:
        return {"index": self.index, "model": self.spec.model, "config": self.spec.config,
                "tag": self.spec.tag, "fid": self.fid, "kid_mean": self.kid_mean,
                "kid_std": self.kid_std, "n_fake": self.n_fake, "miou": self.miou,
                "pixel_acc": self.pixel_acc, "seconds": self.seconds,
                "actor": self.actor, "attempts": self.attempts, "status": self.status,
                "error": self.error}


@dataclass
class EvalSplit:
    """Generator inputs and real targets of one evaluation split.

    ``inputs``: a FolderSource (read once by the driver) or a tensor, uint8 or [-1, 1]
    float (N, 3, H, W). ``real``: a FolderSource of real target images, or precomputed
    RealStats. ``label`` names it in the statistics cache (e.g. ``facades/val/B``).

    Label-map data (SPADE, ``ganc.metrics.splits.label_map_split``): ``inputs`` are uint8 class
    indices (N, 1, H, W), one-hot with ``input_classes`` channels when scored; ``gt`` the
    label maps at their own size, for the ESPNet-CamVid mIoU of every score; ``calib``
    uint8 (n, 1, H, W) training label maps that re-estimate the batch-norm statistics of a
    model registered with ``recalibrate=True`` before it is scored.
    """

    inputs: Union[FolderSource, torch.Tensor]
    real: Union[FolderSource, RealStats]
    label: str = ""
    input_classes: int = 0
    gt: Optional[list] = None
    calib: Optional[np.ndarray] = None

    @classmethod
    def from_folders(cls, inputs, real, size: int = 0, label: str = "",
                     input_crop: str = "full", real_crop: str = "full") -> "EvalSplit":
        """Inputs resized to ``size`` (the test-time transform); real images as they are."""
        inp = FolderSource(_folders(inputs), input_crop, size)
        rl = real if isinstance(real, RealStats) else FolderSource(_folders(real), real_crop, 0)
        return cls(inp, rl, label)

    @classmethod
    def from_data_config(cls, data, name: str = "") -> "EvalSplit":
        """The eval split of a ``DataConfig`` whose ``root`` is a local folder (aligned: A|B
        halves of ``<root>/<eval_split>``; unaligned: ``<eval_split>A`` ->
        ``<eval_split>B``, or ``fid_real`` folders). ``name`` labels the dataset in the
        statistics cache (default: the folder's name)."""
        if not data.root:
            raise ConfigError("data.root is empty: no eval split to score on")
        a_to_b = data.direction == "AtoB"
        if data.kind == "aligned":
            folder = os.path.join(data.root, data.eval_split)
            inp = FolderSource((folder,), "left" if a_to_b else "right", data.crop_size)
            real = FolderSource((folder,), "right" if a_to_b else "left", 0)
            if data.fid_real:
                real = FolderSource(_real_folders(data), "full", 0)
        elif data.kind == "unaligned":
            src, dst = ("A", "B") if a_to_b else ("B", "A")
            inp = FolderSource((os.path.join(data.root, data.eval_split + src),), "full",
                               data.crop_size)
            real = FolderSource(_real_folders(data) if data.fid_real else
                                (os.path.join(data.root, data.eval_split + dst),), "full", 0)
        else:
            raise ConfigError(f"data.kind {data.kind!r} is not one of: aligned, unaligned")
        name = name or os.path.basename(os.path.normpath(data.root))
        label = f"{name}/{data.eval_split}/{data.direction}"
        return cls(inp, real, label)

    def load_inputs(self) -> np.ndarray:
        """uint8 (N, 3, H, W) array of the generator inputs."""
        x = self.inputs
        if isinstance(x, FolderSource):
            x = x.load_all()
        if not torch.is_tensor(x) or x.dim() != 4 or x.shape[0] == 0:
            raise DataError("eval inputs must be a non-empty (N, C, H, W) tensor or a folder")
        if x.is_floating_point():
            x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return x.contiguous().numpy()

    def payload(self):
        """What the actors get: the inputs (uint8 array), or for label-map data a dict of
        the inputs, ``input_classes``, ``gt`` and ``calib``."""
        x = self.load_inputs()
        if not self.input_classes:
            return x
        return {"x": x, "input_classes": int(self.input_classes), "gt": self.gt,
                "calib": self.calib}


def _real_folders(data) -> tuple:
    """``data.fid_real``: folders relative to the dataset's root (absolute paths as given)."""
    return tuple(os.path.join(data.root, f) for f in _folders(data.fid_real))


def _folders(x) -> tuple:
    if isinstance(x, str):
        return tuple(p.strip() for p in x.split(",") if p.strip())
    if isinstance(x, os.PathLike):
        return (os.fspath(x),)
    return tuple(os.fspath(p) for p in x)


def score_of(i: int, spec: SubnetSpec, res: dict, actor: str, attempts: int) -> Score:
    """The Score of spec ``i`` from a scorer's result dict."""
    miou, acc = res.get("miou"), res.get("pixel_acc")
    return Score(i, spec, float(res["fid"]), res.get("kid_mean"), res.get("kid_std"),
                 int(res.get("n_fake", 0)), None if miou is None else float(miou),
                 None if acc is None else float(acc), float(res.get("seconds", 0.0)), actor,
                 attempts)


def failed_score(i: int, spec: SubnetSpec, error: str, actor: str, attempts: int) -> Score:
    """A failed Score carrying the first line of ``error``."""
    return Score(i, spec, float("nan"), actor=actor, attempts=attempts, status="failed",
                 error=error.strip().splitlines()[0][:300] if error.strip() else "failed")


__all__ = ["SubnetSpec", "Score", "EvalSplit", "score_of", "failed_score"]
