"""MUNIT supernets (GAN Compression's ``super_munit`` and ``super_mobile_munit``) and the
extraction of their sub-networks.

A supernet holds the widths of ``ngf`` at every position; ``forward(x, config, style)``
runs the sub-network of a 10-number channel config (``ganc.nn.munit``) by taking the first
k channels of every conv, norm and layer norm. The MLP runs at full width; each AdaIN takes
the first k of its scales and shifts (as the reference's ``SuperAdaptiveInstanceNorm2d``),
so the extracted sub-network's last MLP layer keeps the rows of those scales and shifts.
``super_munit`` has the teacher's plain convs (its sub-networks are
``SubMobileMunitGenerator(separable=False)``), ``super_mobile_munit`` the mobile layout.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..space import ChannelConfig
from .mobile import SuperConv2d, SuperSeparableConv2d, slice_state_dict, within_supernet
from .munit import (MLP_DIM, N_POSITIONS, POSITIONS, STYLE_DIM, ConvBlock, MunitWidths,
                    ResBlock, SubMobileMunitGenerator, _MunitBase, parse_config, widths)

LAST_MLP = "mlp.model.2.fc"       # the MLP layer whose rows are the AdaIN parameters


class SuperConvBlock(ConvBlock):
    conv_class = SuperConv2d
    separable_class = SuperSeparableConv2d

    def forward(self, x, params=None, width=None):
        return self._post(self.conv(self.pad(x), width), params)


class SuperResBlock(ResBlock):
    block_class = SuperConvBlock


def adain_index(full: MunitWidths, sub: MunitWidths) -> list[int]:
    """Indices into the full MLP output of a sub-network's AdaIN parameters: per AdaIN the
    first k shifts then the first k scales."""
    idx, at = [], 0
    for f, c in zip(full.adain_sizes, sub.adain_sizes):
        idx += list(range(at, at + c)) + list(range(at + f, at + f + c))
        at += 2 * f
    return idx


class _SuperMunit(_MunitBase):
    block_class = SuperConvBlock
    res_class = SuperResBlock
    conv_class = SuperConv2d

    def __init__(self, input_nc=3, output_nc=3, ngf=64, style_dim=STYLE_DIM, mlp_dim=MLP_DIM,
                 separable=True):
        super().__init__(ChannelConfig.uniform(ngf, N_POSITIONS), input_nc, output_nc,
                         style_dim, mlp_dim, separable)
        self.ngf = ngf

    @property
    def largest(self) -> ChannelConfig:
        return ChannelConfig.uniform(self.ngf, N_POSITIONS)

    parse_config = staticmethod(parse_config)

    def _check(self, config) -> ChannelConfig:
        cfg = self.largest if config is None else self.parse_config(config)
        return within_supernet(cfg, self.ngf, POSITIONS)

    def _adain_params(self, style, w: MunitWidths):
        full = self._mlp(style)
        if w == self.widths:
            return full
        return full[:, torch.tensor(adain_index(self.widths, w), device=full.device)]

    def _head(self, conv, h):
        return conv(h, self.style_dim)

    def forward(self, x, config=None, style=None):
        return self.forward_features(x, config, points=(), style=style)[0]

    def forward_features(self, x, config=None, points=None, style=None):
        """Output and features of the sub-network ``config`` (the largest by default)."""
        return self._walk(x, style, points, widths(self._check(config)))


class SuperMobileMunitGenerator(_SuperMunit):
    """Once-for-all supernet of the mobile MUNIT generator (``super_mobile_munit``)."""


class SuperMunitGenerator(_SuperMunit):
    """Once-for-all supernet with the teacher's plain convs (``super_munit``)."""

    def __init__(self, input_nc=3, output_nc=3, ngf=64, style_dim=STYLE_DIM, mlp_dim=MLP_DIM):
        super().__init__(input_nc, output_nc, ngf, style_dim, mlp_dim, separable=False)


@torch.no_grad()
def extract_munit_subnet(supernet: _SuperMunit, config) -> SubMobileMunitGenerator:
    """A plain sub generator whose output equals ``supernet(x, config, style)``."""
    cfg = supernet._check(config)
    sub = SubMobileMunitGenerator(cfg, supernet.input_nc, supernet.output_nc,
                                  supernet.style_dim, supernet.mlp_dim, supernet.separable)
    state = supernet.state_dict()
    shapes = {k: v.shape for k, v in sub.state_dict().items()
              if not k.startswith(LAST_MLP)}
    sliced = slice_state_dict(state, shapes)
    rows = torch.tensor(adain_index(supernet.widths, sub.widths))
    for name in ("weight", "bias"):
        sliced[f"{LAST_MLP}.{name}"] = state[f"{LAST_MLP}.{name}"][rows].clone()
    sub.load_state_dict(sliced, strict=True)
    return sub.train(supernet.training)


def is_munit_supernet(net: nn.Module) -> bool:
    return isinstance(net, _SuperMunit)


__all__ = ["SuperMunitGenerator", "SuperMobileMunitGenerator", "extract_munit_subnet",
           "adain_index", "is_munit_supernet"]
