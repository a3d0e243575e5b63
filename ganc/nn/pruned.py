"""The plain generator a pruning run exports: per-layer widths in a resnet or mobile
ResNet generator's layout (:mod:`ganc.prune` slices the kept channels into it)."""
from __future__ import annotations

from typing import Mapping

import torch.nn as nn

from ..errors import ConfigError
from .base import SequentialGenerator
from .mobile import MobileResnetBlock
from .norm import norm_layer
from .resnet import ResnetBlock


class PrunedResnetBlock(ResnetBlock):
    """A ResNet block with its own inner width (the layout of ``ResnetBlock``)."""

    def __init__(self, dim: int, inner: int, norm: str = "instance", dropout: float = 0.0):
        super().__init__(dim, norm, dropout, inner=inner)


WIDTH_KEYS = ("stem", "down1", "trunk", "blocks", "up1", "up2")


class PrunedResnetGenerator(SequentialGenerator):
    """A plain generator with per-layer widths: the result of pruning a resnet or mobile
    ResNet generator. ``widths = {"stem", "down1", "trunk", "blocks": [inner per block],
    "up1", "up2"}``; ``kind`` 'resnet' (3x3 convs in blocks) or 'mobile' (separable).
    The module layout (``model.<i>``) is the teacher's, so its state dict is the
    teacher's sliced to the kept channels, and so are its named feature points."""

    def __init__(self, widths: Mapping, kind: str = "resnet", input_nc: int = 3,
                 output_nc: int = 3, norm: str = "instance", dropout: float = 0.0):
        super().__init__()
        if kind not in ("resnet", "mobile"):
            raise ConfigError(f"pruned generator kind {kind!r} is not one of: resnet, mobile")
        missing = [k for k in WIDTH_KEYS if k not in widths]
        if missing:
            raise ConfigError(f"pruned generator widths lack {missing[0]!r}")
        w = {k: (list(map(int, widths[k])) if k == "blocks" else int(widths[k]))
             for k in WIDTH_KEYS}
        bad = [k for k in WIDTH_KEYS if (min(w[k]) if k == "blocks" and w[k] else
                                         (0 if k == "blocks" else w[k])) <= 0]
        if bad:
            raise ConfigError(f"pruned generator width {bad[0]!r} must be positive: {w[bad[0]]}")
        self.widths, self.kind = w, kind
        self.n_blocks = len(w["blocks"])
        self.input_nc, self.output_nc, self.norm, self.dropout = input_nc, output_nc, norm, dropout
        make_norm, bias = norm_layer(norm)
        s, d1, t = w["stem"], w["down1"], w["trunk"]
        block = PrunedResnetBlock if kind == "resnet" else MobileResnetBlock
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, s, 7, bias=bias), make_norm(s),
                  nn.ReLU(True),
                  nn.Conv2d(s, d1, 3, stride=2, padding=1, bias=bias), make_norm(d1),
                  nn.ReLU(True),
                  nn.Conv2d(d1, t, 3, stride=2, padding=1, bias=bias), make_norm(t),
                  nn.ReLU(True)]
        layers += [block(t, inner, norm, dropout) for inner in w["blocks"]]
        u1, u2 = w["up1"], w["up2"]
        layers += [nn.ConvTranspose2d(t, u1, 3, stride=2, padding=1, output_padding=1, bias=bias),
                   make_norm(u1), nn.ReLU(True),
                   nn.ConvTranspose2d(u1, u2, 3, stride=2, padding=1, output_padding=1,
                                      bias=bias),
                   make_norm(u2), nn.ReLU(True),
                   nn.ReflectionPad2d(3), nn.Conv2d(u2, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def description(self) -> dict:
        """What it takes to rebuild this network (the model card's architecture)."""
        return {"netG": "pruned_resnet", "kind": self.kind, "widths": dict(self.widths),
                "input_nc": self.input_nc, "output_nc": self.output_nc, "norm": self.norm,
                "dropout": self.dropout}

    @classmethod
    def from_description(cls, d: Mapping) -> "PrunedResnetGenerator":
        return cls(d["widths"], d.get("kind", "resnet"), int(d.get("input_nc", 3)),
                   int(d.get("output_nc", 3)), d.get("norm", "instance"),
                   float(d.get("dropout", 0.0)))


__all__ = ["WIDTH_KEYS", "PrunedResnetBlock", "PrunedResnetGenerator"]
