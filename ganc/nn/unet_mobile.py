"""Mobile, super and sub U-Nets: pix2pix's U-Net (``ganc.nn.unet``) with separable convs,
at the widths of a per-level channel config.

One module layout for all three (``down.<i>``, ``up.<i>``, level i+1), so a sub-network's
state dict is the supernet's, sliced; level i of width w(i) = ``multiplier(i) * c[i-1]``:

    down.0       Conv 4x4 s2 (image -> w1)                                      plain
    down.i       LeakyReLU, depthwise Conv 4x4 s2 (w(i)), norm, pointwise (-> w(i+1)), norm
    down.L-1     LeakyReLU, Conv 4x4 s2 (-> wL)                                  plain, no norm
    up.L-1       ReLU, ConvTranspose 4x4 s2 (wL -> w(L-1)), norm                 plain
    up.i         ReLU, pointwise (2 w(i+1) -> w(i)), norm, depthwise ConvTranspose 4x4 s2
                 (w(i)), norm, [Dropout]
    up.0         ReLU, ConvTranspose 4x4 s2 (2 w1 -> output_nc, bias), Tanh      plain

The decoder of level i < L reads its skip and the level below's output concatenated
(2 w(i) channels, skip first). Separable where it pays: the inner levels (at w(i) = 512 a
decoder's plain transposed conv costs 64x its separable one; the decoder's pointwise conv
runs before the upsampling, at a quarter of the pixels); the outermost convs (3 image
channels in, 3 out) and the innermost level (1x1 at the net's native size, where a norm
between depthwise and pointwise would see one value) stay plain.

A supernet's sub-network takes the first k channels of every layer, except that the
decoder's first conv reads the first w(i) channels of each half of its concatenated input
(:func:`concat_index`); :func:`extract_unet_subnet` slices a state dict the same way.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..space import ChannelConfig
from .mobile import SuperConv2d, SuperConvTranspose2d, _norm, slice_state_dict, within_supernet
from .norm import norm_layer
from .unet import (DROPOUT, SLOPE, UnetLevels, UnetSpec, check_points, check_size,
                   has_dropout, level_widths)


def parse_unet_config(config, levels: int) -> ChannelConfig:
    """A channel config of one number per level of a ``levels``-level U-Net."""
    return ChannelConfig.parse(config, legacy=False, lengths=(int(levels),))


def concat_index(width: int, full: int, device=None) -> torch.Tensor:
    """Channels of a ``2 * full`` concatenation [skip, up] that a sub-network of width
    ``width`` at this level uses: the first ``width`` of each half."""
    first = torch.arange(width, device=device)
    return torch.cat([first, first + full])


def _down(level: int, cin: int, cout: int, spec: UnetSpec, conv, convT) -> nn.Sequential:
    make_norm, bias = norm_layer(spec.norm)
    if level == 1:
        return nn.Sequential(conv(cin, cout, 4, stride=2, padding=1, bias=bias))
    if level == spec.levels:
        return nn.Sequential(nn.LeakyReLU(SLOPE), conv(cin, cout, 4, stride=2, padding=1,
                                                       bias=bias))
    return nn.Sequential(nn.LeakyReLU(SLOPE),
                         conv(cin, cin, 4, stride=2, padding=1, groups=cin, bias=bias),
                         make_norm(cin), conv(cin, cout, 1, bias=bias), make_norm(cout))


def _up(level: int, cin: int, cout: int, spec: UnetSpec, conv, convT) -> nn.Sequential:
    """Decoder of ``level``: ``cin`` its (concatenated) input width, ``cout`` its output."""
    make_norm, bias = norm_layer(spec.norm)
    if level == 1:
        return nn.Sequential(nn.ReLU(), convT(cin, cout, 4, stride=2, padding=1), nn.Tanh())
    if level == spec.levels:
        return nn.Sequential(nn.ReLU(), convT(cin, cout, 4, stride=2, padding=1, bias=bias),
                             make_norm(cout))
    layers = [nn.ReLU(), conv(cin, cout, 1, bias=bias), make_norm(cout),
              convT(cout, cout, 4, stride=2, padding=1, groups=cout, bias=bias),
              make_norm(cout)]
    if spec.dropout > 0 and has_dropout(level, spec.levels):
        layers.append(nn.Dropout(spec.dropout))
    return nn.Sequential(*layers)


class SuperConvTranspose(SuperConvTranspose2d):
    """A transposed conv sliced to the first channels; a depthwise one (``groups`` > 1)
    keeps one filter per input channel."""

    def forward(self, x, out_channels=None):
        if self.groups == 1:
            return super().forward(x, out_channels)
        c = x.shape[1]
        b = None if self.bias is None else self.bias[:c]
        return F.conv_transpose2d(x, self.weight[:c], b, self.stride, self.padding,
                                  self.output_padding, c, self.dilation)


class _UnetBase(UnetLevels, nn.Module):
    """Shared construction of the mobile U-Nets."""

    conv_class, convT_class = nn.Conv2d, nn.ConvTranspose2d

    def __init__(self, config: ChannelConfig, spec: UnetSpec):
        super().__init__()
        self.spec, self.levels, self.config = spec, spec.levels, config
        self.input_nc, self.output_nc, self.norm = spec.input_nc, spec.output_nc, spec.norm
        w = level_widths(config)
        outer = (spec.input_nc,) + w[:-1]
        self.down = nn.ModuleList(
            _down(i + 1, outer[i], w[i], spec, self.conv_class, self.convT_class)
            for i in range(self.levels))
        ups = []
        for i in range(self.levels):
            cin = w[i] if i == self.levels - 1 else 2 * w[i]
            cout = spec.output_nc if i == 0 else w[i - 1]
            ups.append(_up(i + 1, cin, cout, spec, self.conv_class, self.convT_class))
        self.up = nn.ModuleList(ups)

    def _walk(self, x, points, down, up):
        """The U-Net's dataflow: ``down(i, x)`` / ``up(i, x)`` run level i+1's halves."""
        check_size(x.shape[2], x.shape[3], self.levels)
        wanted = check_points(points, self.levels)
        skips = []
        for i in range(self.levels):
            x = down(i, x)
            skips.append(x)
        feats: dict = {}
        y = skips.pop()
        for i in range(self.levels - 1, -1, -1):
            y = up(i, y if i == self.levels - 1 else torch.cat([skips[i], y], 1))
            if f"up{i + 1}" in wanted:
                feats[f"up{i + 1}"] = y
        return y, feats


class SubMobileUnetGenerator(_UnetBase):
    """A plain mobile U-Net at the widths of a channel config (one number per level)."""

    def __init__(self, config, input_nc=3, output_nc=3, norm="batch", dropout=DROPOUT,
                 levels=None):
        levels = len(ChannelConfig.parse(config)) if levels is None else int(levels)
        super().__init__(parse_unet_config(config, levels),
                         UnetSpec(levels, int(input_nc), int(output_nc), norm, float(dropout)))

    def forward(self, x):
        return self.forward_features(x, points=())[0]

    def forward_features(self, x, points=None):
        """Output and a dict of the features at the named points (all by default)."""
        return self._walk(x, points, lambda i, h: self.down[i](h),
                          lambda i, h: self.up[i](h))


class MobileUnetGenerator(SubMobileUnetGenerator):
    """The uncompressed mobile U-Net: every level at ``ngf`` (the teacher's widths)."""

    def __init__(self, input_nc=3, output_nc=3, ngf=64, norm="batch", dropout=DROPOUT,
                 levels=8):
        super().__init__(ChannelConfig.uniform(ngf, levels), input_nc, output_nc, norm,
                         dropout, levels)
        self.ngf = ngf


class SuperMobileUnetGenerator(_UnetBase):
    """Once-for-all supernet: ``forward(x, config)`` runs the sub-network ``config``."""

    conv_class, convT_class = SuperConv2d, SuperConvTranspose

    def __init__(self, input_nc=3, output_nc=3, ngf=64, norm="batch", dropout=DROPOUT,
                 levels=8):
        super().__init__(ChannelConfig.uniform(ngf, levels),
                         UnetSpec(int(levels), int(input_nc), int(output_nc), norm,
                                  float(dropout)))
        self.ngf = ngf
        self.full = level_widths(self.config)

    @property
    def largest(self) -> ChannelConfig:
        return ChannelConfig.uniform(self.ngf, self.levels)

    def parse_config(self, config) -> ChannelConfig:
        """A channel config of this supernet's levels."""
        return parse_unet_config(config, self.levels)

    def _check(self, config) -> ChannelConfig:
        cfg = self.largest if config is None else self.parse_config(config)
        return within_supernet(cfg, self.ngf, [f"level{i + 1}" for i in range(len(cfg))])

    def forward(self, x, config=None):
        return self.forward_features(x, config, points=())[0]

    def forward_features(self, x, config=None, points=None):
        w = level_widths(self._check(config))
        return self._walk(x, points, lambda i, h: self._down(i, h, w[i]),
                          lambda i, h: self._up(i, h, self.output_nc if i == 0 else w[i - 1]))

    def _down(self, i: int, x, cout: int):
        layers = self.down[i]
        if len(layers) == 1:
            return layers[0](x, cout)
        x = layers[0](x)
        if len(layers) == 2:
            return layers[1](x, cout)
        x = _norm(layers[2], layers[1](x))
        return _norm(layers[4], layers[3](x, cout))

    def _up(self, i: int, x, cout: int):
        layers = self.up[i]
        x = layers[0](x)
        if i == self.levels - 1:
            return _norm(layers[2], layers[1](x, cout))
        idx = concat_index(x.shape[1] // 2, self.full[i], x.device)
        first = layers[1]
        if i == 0:
            w = first.weight[idx, :cout]
            return layers[2](F.conv_transpose2d(x, w, first.bias[:cout], 2, 1))
        w = first.weight[:cout, idx]
        b = None if first.bias is None else first.bias[:cout]
        x = _norm(layers[2], F.conv2d(x, w, b))
        x = _norm(layers[4], layers[3](x, cout))
        return layers[5](x) if len(layers) > 5 else x


@torch.no_grad()
def extract_unet_subnet(supernet: SuperMobileUnetGenerator, config) -> SubMobileUnetGenerator:
    """A plain sub-network whose output equals ``supernet(x, config)``."""
    cfg = supernet._check(config)
    s = supernet.spec
    sub = SubMobileUnetGenerator(cfg, s.input_nc, s.output_nc, s.norm, s.dropout, s.levels)
    source = dict(supernet.state_dict())
    w = level_widths(cfg)
    for i in range(s.levels - 1):          # decoders reading a concatenation: gather first
        key = f"up.{i}.1.weight"
        dim = 0 if i == 0 else 1            # ConvTranspose2d: (in, out, k, k); Conv2d: (out, in)
        source[key] = source[key].index_select(dim, concat_index(w[i], supernet.full[i]))
    shapes = {k: v.shape for k, v in sub.state_dict().items()}
    sub.load_state_dict(slice_state_dict(source, shapes), strict=True)
    return sub.train(supernet.training)


__all__ = ["SubMobileUnetGenerator", "MobileUnetGenerator", "SuperMobileUnetGenerator",
           "extract_unet_subnet", "parse_unet_config", "concat_index"]
