"""Cost of a MUNIT sub-network as a function of its channel config: MACs and parameters.

The closed form follows ``ganc.nn.munit.widths`` and the field's MACs convention
(``ganc.profile``): per conv output element, in_channels / groups x kernel area multiplies;
per linear output, its inputs; one MAC per output element of every instance norm (the
content encoder's and the separable convs'), of every AdaIN (its instance norm, plus its
per-image scale: 2 per element; the reference's batch-norm trick counts 1, 8.4M of 77.3G at
256x256) and of every layer norm (its per-channel scale); nothing for additions,
activations, padding, pooling and nearest upsampling.

What is counted, as the reference's ``profile`` does (its ``MACs (with style encoder)``,
the number behind its 77.3G): the reconstruction forward ``G(x)``, content encoder, style
encoder (on the same image), MLP and decoder. Translating with a sampled style code skips the
style encoder: ``style_encoder=False`` counts that path (``translate_macs``).
``tests/test_munit.py`` checks both against ``ganc.profile.count_macs`` on real modules.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import torch

from ..nn.munit import MLP_DIM, STYLE_DIM, SubMobileMunitGenerator, parse_config, widths
from ..profile import count_params
from ..space import SearchSpace


@dataclass(frozen=True)
class MunitCostModel:
    """MACs / params of ``sub_mobile_munit`` (``separable``; the teacher's plain convs
    without it) on ``height`` x ``width`` images. Picklable and cached per config."""

    height: int = 256
    width: int = 256
    input_nc: int = 3
    output_nc: int = 3
    style_dim: int = STYLE_DIM
    mlp_dim: int = MLP_DIM
    separable: bool = True
    style_encoder: bool = True
    norm: str = "instance"

    def macs(self, config) -> int:
        return _macs(self, str(parse_config(config)))

    def params(self, config) -> int:
        return _params(self, str(parse_config(config)))

    __call__ = macs

    def translate_macs(self, config) -> int:
        """MACs with a given style code (no style encoder): what translation runs."""
        return _macs(MunitCostModel(**{**asdict(self), "style_encoder": False}),
                     str(parse_config(config)))

    def smallest_macs(self, space: SearchSpace) -> int:
        return self.macs(space.smallest())

    def to_dict(self) -> dict:
        return asdict(self)


def _down(n: int) -> int:
    """Side after a 4x4 stride-2 conv on a side reflection-padded by 1."""
    return (n + 2 - 4) // 2 + 1


def _conv(pixels: int, cin: int, cout: int, k: int, separable: bool = False) -> int:
    """MACs of a conv (or a separable one: depthwise, instance norm, pointwise)."""
    if separable:
        return pixels * (cin * k * k + cin + cout * cin)
    return pixels * cout * cin * k * k


def _res_block(model: MunitCostModel, pixels: int, dim: int, inner: int,
               per_norm: int) -> int:
    """A residual block at ``pixels``: two 3x3 convs, each followed by a norm costing
    ``per_norm`` MACs per element."""
    sep = model.separable
    return (_conv(pixels, dim, inner, 3, sep) + per_norm * pixels * inner
            + _conv(pixels, inner, dim, 3, sep) + per_norm * pixels * dim)


def _style_encoder(model: MunitCostModel, w) -> int:
    h, wd = model.height, model.width
    macs = _conv(h * wd, model.input_nc, w.style[0], 7)
    for cin, cout in zip(w.style[:-1], w.style[1:]):
        h, wd = _down(h), _down(wd)
        macs += _conv(h * wd, cin, cout, 4)
    return macs + model.style_dim * w.style[-1]          # the 1x1 conv after pooling


@lru_cache(maxsize=65536)
def _macs(model: MunitCostModel, config: str) -> int:
    w = widths(config)
    p0 = model.height * model.width
    p1 = (model.height // 2) * (model.width // 2)
    p2 = (model.height // 4) * (model.width // 4)
    sep = model.separable
    macs = _conv(p0, model.input_nc, w.stem, 7) + p0 * w.stem            # content encoder
    macs += _conv(p1, w.stem, w.down1, 4) + p1 * w.down1
    macs += _conv(p2, w.down1, w.trunk, 4) + p2 * w.trunk
    macs += sum(_res_block(model, p2, w.trunk, i, 1) for i in w.enc_inner)
    macs += sum(_res_block(model, p2, w.trunk, i, 2) for i in w.dec_inner)   # AdaIN blocks
    macs += _conv(p1, w.trunk, w.up[0], 5, sep) + p1 * w.up[0]             # + layer norm
    macs += _conv(p0, w.up[0], w.up[1], 5, sep) + p0 * w.up[1]
    macs += _conv(p0, w.up[1], model.output_nc, 7)
    macs += (model.style_dim * model.mlp_dim + model.mlp_dim ** 2
             + model.mlp_dim * w.n_adain_params)                            # MLP, batch 1
    if model.style_encoder:
        macs += _style_encoder(model, w)
    return int(macs)


@lru_cache(maxsize=65536)
def _params(model: MunitCostModel, config: str) -> int:
    """Counted on a network built on the meta device (shapes only, no memory)."""
    with torch.device("meta"):
        net = SubMobileMunitGenerator(config, model.input_nc, model.output_nc,
                                      model.style_dim, model.mlp_dim, model.separable)
    return count_params(net)


__all__ = ["MunitCostModel"]
