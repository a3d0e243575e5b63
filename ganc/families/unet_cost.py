"""Cost of a U-Net as a function of its channel config (one number per level): MACs and
parameters, in closed form (the U-Net family's cost model).

The widths follow ``ganc.nn.unet.level_widths``; the counting is the field's convention
(``ganc.profile``, GUIDE §3): per conv output element, in_channels / groups x kernel area
multiplies (a transposed conv per *output* element), one MAC per output element of every
norm; nothing for activations, concatenations and dropout. ``separable`` is the mobile
layout (``ganc.nn.unet_mobile``); without it, pix2pix's (``ganc.nn.unet``: ``unet_256`` at
256x256 is 18.14G MACs, 6.05G counting transposed convs per input element).
``tests/test_unet.py`` checks it against ``ganc.profile.count_macs`` on real modules.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import torch

from ..errors import ConfigError
from ..nn.unet import UnetGenerator, check_size, level_widths
from ..nn.unet_mobile import SubMobileUnetGenerator, parse_unet_config
from ..profile import count_params
from ..space import SearchSpace

K = 16            # every down / up conv is 4x4


@dataclass(frozen=True)
class UnetCostModel:
    """MACs / params of a ``levels``-level ``sub_mobile_unet`` (``separable``; pix2pix's
    layout without it) at ``size`` x ``size`` inputs. Picklable
    and cached per config."""

    size: int = 256
    levels: int = 8
    input_nc: int = 3
    output_nc: int = 3
    norm: str = "batch"
    separable: bool = True

    def __post_init__(self):
        check_size(self.size, self.size, self.levels)      # fail early on bad sizes

    def macs(self, config) -> int:
        return _macs(self, str(parse_unet_config(config, self.levels)))

    def params(self, config) -> int:
        return _params(self, str(parse_unet_config(config, self.levels)))

    __call__ = macs

    def smallest_macs(self, space: SearchSpace) -> int:
        return self.macs(space.smallest())

    def to_dict(self) -> dict:
        return asdict(self)


def _encoder(m: UnetCostModel, i: int, px: int, cin: int, cout: int, n: int) -> int:
    """MACs of level i's encoder (``px`` output pixels, ``cin`` -> ``cout``)."""
    if i == 1 or i == m.levels or not m.separable:
        return px * cout * (cin * K + (n if 1 < i < m.levels else 0))
    return px * cin * (K + n) + px * cout * (cin + n)          # dw, norm, pw, norm


def _decoder(m: UnetCostModel, i: int, px_in: int, cin: int, cout: int, n: int) -> int:
    """MACs of level i's decoder (``px_in`` input pixels, ``cin`` -> ``cout``; its output
    has 4 ``px_in`` pixels)."""
    px = 4 * px_in
    if i == 1:
        return px * cout * cin * K
    if i == m.levels or not m.separable:
        return px * cout * (cin * K + n)
    return px_in * cout * (cin + n) + px * cout * (K + n)     # pw, norm, dwT, norm


@lru_cache(maxsize=65536)
def _macs(m: UnetCostModel, config: str) -> int:
    w = (m.input_nc,) + level_widths(parse_unet_config(config, m.levels))
    n = 1 if m.norm in ("instance", "batch") else 0
    macs = 0
    for i in range(1, m.levels + 1):
        px = (m.size >> i) ** 2                     # pixels of level i's encoder output
        macs += _encoder(m, i, px, w[i - 1], w[i], n)
        cin = w[i] if i == m.levels else 2 * w[i]
        macs += _decoder(m, i, px, cin, m.output_nc if i == 1 else w[i - 1], n)
    return int(macs)


@lru_cache(maxsize=65536)
def _params(m: UnetCostModel, config: str) -> int:
    """Counted on a network built on the meta device (shapes only, no memory)."""
    cfg = parse_unet_config(config, m.levels)
    with torch.device("meta"):
        if m.separable:
            net = SubMobileUnetGenerator(cfg, m.input_nc, m.output_nc, m.norm, 0.0, m.levels)
        elif len(set(cfg)) == 1:
            net = UnetGenerator(m.input_nc, m.output_nc, cfg[0], m.norm, 0.0, m.levels)
        else:
            raise ConfigError(f"channel config {cfg}: pix2pix's U-Net has one ngf (a uniform "
                              "config)")
    return count_params(net)


__all__ = ["UnetCostModel"]
