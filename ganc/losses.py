"""Loss math of teacher training and supernet distillation, in plain PyTorch.

- :class:`GANLoss`: vanilla (BCE with logits), lsgan (MSE) and hinge objectives on patch
  logits, for the discriminator and the generator side.
- :func:`recon_l1`: the L1 reconstruction term (pix2pix, cycle, identity, distillation).
- :class:`FeatureDistiller`: GAN Compression's feature distillation. At each named point
  a learnable 1x1 conv maps the student's feature to the teacher's width and the MSE to
  the (frozen) teacher's feature is taken. The mapping is built at the student's largest
  width; a narrower sub-network uses the first k input channels of the same conv, so
  every sub-network of a supernet shares one set of mappings.
- :class:`ImagePool`: CycleGAN's history of generated images for the discriminator.
"""
from __future__ import annotations

import random
from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError
from .nn.init import init_weights

GAN_MODES = ("vanilla", "lsgan", "hinge")


class GANLoss(nn.Module):
    """``loss(pred, real, for_discriminator)`` averaged over every patch logit.

    vanilla: BCE-with-logits against 1/0; lsgan: MSE against 1/0; hinge: for D
    ``relu(1 - pred)`` on real and ``relu(1 + pred)`` on fake, for G ``-pred``.
    """

    def __init__(self, mode: str = "vanilla"):
        super().__init__()
        if mode not in GAN_MODES:
            raise ConfigError(f"model.gan_mode {mode!r} is not one of: {', '.join(GAN_MODES)}")
        self.mode = mode

    def forward(self, pred: torch.Tensor, real: bool, for_discriminator: bool = True):
        pred = pred.float()
        if self.mode == "vanilla":
            target = torch.ones_like(pred) if real else torch.zeros_like(pred)
            return F.binary_cross_entropy_with_logits(pred, target)
        if self.mode == "lsgan":
            target = torch.ones_like(pred) if real else torch.zeros_like(pred)
            return F.mse_loss(pred, target)
        # hinge
        if for_discriminator:
            return F.relu(1 - pred).mean() if real else F.relu(1 + pred).mean()
        if not real:
            raise ValueError("hinge generator loss is defined for real=True only")
        return -pred.mean()


def recon_l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (float32 even under autocast)."""
    return F.l1_loss(output.float(), target.float())


def discriminator_loss(gan: GANLoss, pred_real: torch.Tensor, pred_fake: torch.Tensor):
    """The discriminator's objective, halved as in pix2pix/CycleGAN."""
    return 0.5 * (gan(pred_real, True) + gan(pred_fake, False))


class FeatureDistiller(nn.Module):
    """Learnable 1x1 mappings from student features to teacher features, plus the MSE.

    ``student_widths`` / ``teacher_widths``: channels of each named point at the
    student's largest width and in the teacher. ``forward(student_feats,
    teacher_feats)`` returns the sum over points of ``mse(map(s), t)``; a student feature
    narrower than the mapping uses its first ``s.shape[1]`` input channels.
    """

    def __init__(self, student_widths: Mapping[str, int], teacher_widths: Mapping[str, int]):
        super().__init__()
        missing = sorted(set(student_widths) ^ set(teacher_widths))
        if missing:
            raise ConfigError(f"distillation points {missing} exist in only one of student and "
                              "teacher")
        self.points = list(student_widths)
        self.maps = nn.ModuleDict({
            p: nn.Conv2d(int(student_widths[p]), int(teacher_widths[p]), 1)
            for p in self.points})
        init_weights(self.maps)        # as the reference initialises its mappings

    @classmethod
    @torch.no_grad()
    def from_models(cls, student: nn.Module, teacher: nn.Module, points: Sequence[str],
                    input_nc: int = 3, size: int = 16, student_kwargs=None):
        """Measure each point's width with one dummy forward of both networks."""
        points = list(points)
        if not points:
            raise ConfigError("distill.distill_points is empty")
        for net, who in ((student, "student"), (teacher, "teacher")):
            known = getattr(net, "feature_points", {})
            bad = [p for p in points if p not in known]
            if bad:
                raise ConfigError(f"distill.distill_points {bad} are not named points of the "
                                  f"{who} ({', '.join(known)})")
        x = torch.zeros(1, input_nc, size, size, device=next(student.parameters()).device)
        _, sf = student.forward_features(x, points=points, **(student_kwargs or {}))
        _, tf = teacher.forward_features(x.to(next(teacher.parameters()).device), points=points)
        return cls({p: sf[p].shape[1] for p in points}, {p: tf[p].shape[1] for p in points})

    def map(self, point: str, feat: torch.Tensor) -> torch.Tensor:
        conv = self.maps[point]
        c = feat.shape[1]
        if c > conv.in_channels:
            raise ConfigError(f"student feature {point!r} has {c} channels; the mapping takes "
                              f"at most {conv.in_channels}")
        return F.conv2d(feat, conv.weight[:, :c], conv.bias)

    def forward(self, student_feats: Mapping[str, torch.Tensor],
                teacher_feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for p in self.points:
            mapped = self.map(p, student_feats[p])
            total = total + F.mse_loss(mapped.float(), teacher_feats[p].detach().float())
        return total


class ImagePool:
    """A buffer of up to ``size`` generated images (CycleGAN): each query returns, per
    image, either that image or (with probability 1/2 once full) a stored older one,
    which it then replaces."""

    def __init__(self, size: int = 50, rng: random.Random | None = None):
        self.size = int(size)
        self.images: list[torch.Tensor] = []
        self.rng = rng or random.Random(0)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return images
        out = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif self.rng.random() > 0.5:
                j = self.rng.randrange(self.size)
                out.append(self.images[j].clone())
                self.images[j] = img.clone()
            else:
                out.append(img)
        return torch.cat(out, 0)

    def state(self) -> list:
        return [t.cpu() for t in self.images]

    def load(self, images: list, device=None) -> None:
        self.images = [t.to(device) if device is not None else t for t in images][: self.size]
