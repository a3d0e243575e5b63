"""Cost of a SPADE sub-network as a function of its channel config: MACs and parameters.

The closed form follows ``ganc.nn.spade.layout`` (the widths) and the field's MACs
convention (``ganc.profile``): per conv output element, in_channels / groups x kernel area
multiplies; one MAC per output element of every norm (the modulations' batch norm, the
separable convs' instance norm) and of SPADE's elementwise ``x * (1 + gamma)``; nothing for
additions, activations and nearest upsampling. ``tests/test_spade.py`` checks it against
``ganc.profile.count_macs`` on real modules.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import torch

from ..nn.spade import (LABEL_NC, BlockSpec, SubMobileSPADEGenerator, latent_size, layout,
                        parse_config)
from ..profile import count_params
from ..space import SearchSpace

KERNEL = 9        # every SPADE conv but conv_s is 3x3


@dataclass(frozen=True)
class SpadeCostModel:
    """MACs / params of ``sub_mobile_spade`` (``separable``; the teacher's layout without it)
    at ``height`` x ``width`` label maps. Picklable and cached per config."""

    height: int = 96
    width: int = 128
    input_nc: int = LABEL_NC
    output_nc: int = 3
    norm: str = "batch"
    upsampling: str = "normal"
    separable: bool = True

    def __post_init__(self):
        latent_size(self.height, self.width, self.upsampling)      # fail early on bad sizes

    def macs(self, config) -> int:
        return _macs(self, str(parse_config(config)))

    def params(self, config) -> int:
        return _params(self, str(parse_config(config)))

    __call__ = macs

    def smallest_macs(self, space: SearchSpace) -> int:
        return self.macs(space.smallest())

    def to_dict(self) -> dict:
        return asdict(self)


def _modulation(model: SpadeCostModel, channels: int, hidden: int) -> int:
    """MACs per pixel of one SPADE modulation of ``channels`` features."""
    per = channels                                        # param-free norm
    per += hidden * model.input_nc * KERNEL               # mlp_shared
    if model.separable:                                   # mlp_gamma and mlp_beta
        per += 2 * (hidden * KERNEL + hidden + channels * hidden)
    else:
        per += 2 * channels * hidden * KERNEL
    return per + channels                                 # normalized * (1 + gamma)


def _block(model: SpadeCostModel, b: BlockSpec) -> int:
    """MACs per pixel of one SPADE residual block."""
    per = _modulation(model, b.cin, b.hidden) + b.inner * b.cin * KERNEL
    per += _modulation(model, b.inner, b.hidden) + b.cout * b.inner * KERNEL
    if b.learned_shortcut:
        per += _modulation(model, b.cin, b.hidden) + b.cout * b.cin
    return per


@lru_cache(maxsize=65536)
def _macs(model: SpadeCostModel, config: str) -> int:
    lh, lw = latent_size(model.height, model.width, model.upsampling)
    pixels = lh * lw
    fc, blocks = layout(config, model.upsampling)
    macs = pixels * fc * model.input_nc * KERNEL
    for b in blocks:
        if b.upsample_before:
            pixels *= 4
        macs += pixels * _block(model, b)
    return int(macs + pixels * model.output_nc * blocks[-1].cout * KERNEL)   # conv_img


@lru_cache(maxsize=65536)
def _params(model: SpadeCostModel, config: str) -> int:
    """Counted on a network built on the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        net = SubMobileSPADEGenerator(config, model.input_nc, model.output_nc, model.norm,
                                      model.upsampling, model.separable)
    return count_params(net)


__all__ = ["SpadeCostModel"]
