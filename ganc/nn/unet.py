"""pix2pix's U-Net generators (``unet_256``, ``unet_128``) in pytorch-CycleGAN-and-pix2pix's
module layout, and the level layout every U-Net variant here shares.

The reference builds a U-Net of L levels recursively (``UnetGenerator`` /
``UnetSkipConnectionBlock``): level 1 (outermost) to L (innermost); the block of level i
reads the width of level i-1 (the image at level 1) and

    down:  LeakyReLU(0.2), Conv 4x4 stride 2 -> width(i), norm          (level 1: conv only;
                                                                         level L: no norm)
    the block of level i+1, whose output is its input concatenated with its decoder's
    up:    ReLU, ConvTranspose 4x4 stride 2 -> width(i-1), norm, [Dropout(0.5)]
                                                     (level 1: -> output_nc with bias, Tanh)

and returns ``cat([x, up(...)])`` (level 1 returns the decoder's output alone). Widths at
``ngf``: level i has ``min(2**(i-1), 8) * ngf`` channels. ``unet_256`` has 8 levels (input
sides divisible by 256), ``unet_128`` 7 (by 128); the decoders of levels 5 .. L-1 hold the
dropout (three in ``unet_256``, two in ``unet_128``). Batch norm (the pix2pix default) is
affine and its convs have no bias; instance norm convs carry a bias (the reference's rule).
At ngf 64, 3 -> 3 channels, ``unet_256`` has 54,413,955 parameters.

The reference's LeakyReLU is in place, so its skip carries LeakyReLU(x) where these modules
carry x; the decoder's ReLU follows every concatenation, and ReLU(LeakyReLU(x)) = ReLU(x), so
the outputs are the same.

Mode: pix2pix's ``test.py`` runs the generator in train mode unless ``--eval`` is given
(batch statistics of the test batch, dropout on); :func:`reference_test_mode` sets that
mode. ganc scores (FID), exports and distils from U-Nets in eval mode (running statistics,
no dropout): deterministic, one image's output independent of its batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import ConfigError
from .norm import norm_layer

LEVELS = {"unet_256": 8, "unet_128": 7}   # levels (= stride-2 downsamplings) per net
SLOPE = 0.2                               # LeakyReLU slope of the encoder
DROPOUT = 0.5                             # pix2pix's U-Net dropout (``use_dropout``)
FIRST_DROPOUT_LEVEL = 5                   # decoders of levels 5 .. L-1 hold it


def multiplier(level: int) -> int:
    """Width of ``level`` (1-based) per unit of ngf: 1, 2, 4, 8, 8, ..."""
    return min(2 ** (level - 1), 8)


def level_widths(config) -> tuple[int, ...]:
    """Encoder output width of each level under a per-level channel config."""
    return tuple(multiplier(i + 1) * int(c) for i, c in enumerate(config))


def has_dropout(level: int, levels: int) -> bool:
    return FIRST_DROPOUT_LEVEL <= level < levels


def check_size(height: int, width: int, levels: int) -> None:
    """A U-Net of ``levels`` levels halves the input ``levels`` times."""
    f = 2 ** levels
    if height % f or width % f or height < f or width < f:
        raise ConfigError(f"input {height}x{width} (HxW): a U-Net of {levels} levels needs "
                          f"height and width divisible by {f}")


def point_names(levels: int) -> tuple[str, ...]:
    """Named distillation points: ``up<i>``, the decoder output of level i (before its
    concatenation with the skip), for i = L .. 2, innermost first."""
    return tuple(f"up{i}" for i in range(levels, 1, -1))


def check_points(points, levels: int) -> set:
    names = point_names(levels)
    wanted = set(names if points is None else points)
    unknown = wanted - set(names)
    if unknown:
        raise ConfigError(f"unknown U-Net feature points {sorted(unknown)}; named points: "
                          + ", ".join(names))
    return wanted


@dataclass(frozen=True)
class UnetSpec:
    """What builds a U-Net: levels, image channels, norm, dropout probability."""

    levels: int
    input_nc: int = 3
    output_nc: int = 3
    norm: str = "batch"
    dropout: float = DROPOUT


class UnetSkipBlock(nn.Module):
    """One level of the reference's recursive U-Net; ``model`` holds its layers in the
    reference's order (so ``model.<k>`` keys match)."""

    def __init__(self, level: int, outer_nc: int, inner_nc: int, spec: UnetSpec,
                 submodule: "UnetSkipBlock | None" = None):
        super().__init__()
        make_norm, bias = norm_layer(spec.norm)
        self.level, self.outermost, self.innermost = level, level == 1, submodule is None
        input_nc = spec.input_nc if self.outermost else outer_nc
        down = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        up_in = inner_nc if self.innermost else 2 * inner_nc
        if self.outermost:
            layers = [down, submodule, nn.ReLU(),
                      nn.ConvTranspose2d(up_in, outer_nc, 4, stride=2, padding=1), nn.Tanh()]
        else:
            up = nn.ConvTranspose2d(up_in, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [nn.LeakyReLU(SLOPE), down]
            if not self.innermost:
                layers += [make_norm(inner_nc), submodule]
            layers += [nn.ReLU(), up, make_norm(outer_nc)]
            if spec.dropout > 0 and has_dropout(level, spec.levels):
                layers.append(nn.Dropout(spec.dropout))
        self.model = nn.Sequential(*layers)

    def run(self, x, feats: dict, wanted: set):
        """This level's output (its input concatenated with its decoder's output; level 1:
        the image), recording the decoder outputs named in ``wanted``."""
        m = self.model
        n_down = 1 if self.outermost else (2 if self.innermost else 3)
        h = m[:n_down](x)
        if not self.innermost:
            h = m[n_down].run(h, feats, wanted)
            n_down += 1
        y = m[n_down:](h)
        if self.outermost:
            return y
        if f"up{self.level}" in wanted:
            feats[f"up{self.level}"] = y
        return torch.cat([x, y], 1)


class UnetLevels:
    """What every U-Net of ``self.levels`` levels tells the pipeline: its distillation
    points and the multiple its input sides must be."""

    levels: int

    @property
    def feature_points(self) -> dict[str, str]:
        return {p: p for p in point_names(self.levels)}

    @property
    def side_multiple(self) -> int:
        """Input sides must be multiples of this (``ganc.deploy``)."""
        return 2 ** self.levels


class UnetGenerator(UnetLevels, nn.Module):
    """pix2pix's U-Net (the teacher): ``levels`` levels at ``ngf``."""

    def __init__(self, input_nc=3, output_nc=3, ngf=64, norm="batch", dropout=DROPOUT,
                 levels=8):
        super().__init__()
        self.spec = UnetSpec(int(levels), int(input_nc), int(output_nc), norm, float(dropout))
        self.levels, self.ngf = int(levels), int(ngf)
        w = level_widths([ngf] * self.levels)
        block = None
        for i in range(self.levels, 0, -1):
            outer = output_nc if i == 1 else w[i - 2]
            block = UnetSkipBlock(i, outer, w[i - 1], self.spec, block)
        self.model = block

    def forward(self, x):
        return self.forward_features(x, points=())[0]

    def forward_features(self, x, points=None):
        """Output and a dict of the features at the named points (all by default)."""
        check_size(x.shape[2], x.shape[3], self.levels)
        feats: dict = {}
        return self.model.run(x, feats, check_points(points, self.levels)), feats


def reference_test_mode(net: nn.Module) -> nn.Module:
    """pix2pix's default test mode (``test.py`` without ``--eval``): ``net.train()``, so
    batch norm normalises by the test batch's statistics and dropout is on. Returns
    ``net``. ganc's own scoring uses ``net.eval()``."""
    return net.train()


__all__ = ["UnetGenerator", "UnetSkipBlock", "UnetSpec", "LEVELS", "level_widths",
           "multiplier", "point_names", "check_size", "reference_test_mode"]
