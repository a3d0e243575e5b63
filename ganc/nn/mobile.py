"""Mobile, super and sub mobile ResNet generators (GAN Compression).

All three share one module layout, the released one (``model.<i>``,
``model.<i>.conv_block.<j>.conv.<k>``), so a sub-network's state dict is the supernet's
state dict sliced to first-k channels along every dimension.

- ``SubMobileResnetGenerator(config)``: a plain network with the widths of a channel config.
- ``MobileResnetGenerator(ngf)``: the uncompressed mobile student (every width = ngf).
- ``SuperMobileResnetGenerator(ngf)``: holds the largest widths; ``forward(x, config)``
  runs the sub-network ``config`` by taking the first k channels of every layer.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..space import ChannelConfig
from .base import FIRST_BLOCK, SequentialGenerator
from .norm import norm_layer


def block_group(i: int, n_blocks: int) -> int:
    """Config position (3, 4 or 5) holding the inner width of residual block i."""
    return 3 + (3 * i) // n_blocks


def layer_widths(config: ChannelConfig, n_blocks: int, output_nc: int) -> dict[int, int]:
    """Output width of each conv layer of ``model`` (by index) under a channel config."""
    c = config
    up1 = FIRST_BLOCK + n_blocks
    return {1: c[0], 4: 2 * c[1], 7: 4 * c[2], up1: 2 * c[6], up1 + 3: c[7],
            up1 + 7: output_nc}


# ---------------------------------------------------------------- plain (sub) layers
class SeparableConv2d(nn.Module):
    """Depthwise kxk conv, norm, pointwise 1x1 conv."""

    def __init__(self, in_channels, out_channels, kernel_size=3, padding=0, norm="instance"):
        super().__init__()
        make_norm, bias = norm_layer(norm)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size, padding=padding,
                      groups=in_channels, bias=bias),
            make_norm(in_channels),
            nn.Conv2d(in_channels, out_channels, 1, bias=bias),
        )

    def forward(self, x):
        return self.conv(x)


class MobileResnetBlock(nn.Module):
    """pad, sepconv(dim->inner), norm, ReLU, dropout, pad, sepconv(inner->dim), norm, + skip."""

    def __init__(self, dim, inner, norm="instance", dropout=0.0):
        super().__init__()
        make_norm, _ = norm_layer(norm)
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), SeparableConv2d(dim, inner, 3, norm=norm), make_norm(inner),
            nn.ReLU(True), nn.Dropout(dropout),
            nn.ReflectionPad2d(1), SeparableConv2d(inner, dim, 3, norm=norm), make_norm(dim),
        )

    def forward(self, x):
        return x + self.conv_block(x)


def _build_layers(input_nc, output_nc, config: ChannelConfig, norm, dropout, n_blocks,
                  conv=nn.Conv2d, convT=nn.ConvTranspose2d, block=MobileResnetBlock):
    make_norm, bias = norm_layer(norm)
    c = config
    stem, d1, d2 = c[0], 2 * c[1], 4 * c[2]
    layers = [nn.ReflectionPad2d(3), conv(input_nc, stem, 7, bias=bias), make_norm(stem),
              nn.ReLU(True),
              conv(stem, d1, 3, stride=2, padding=1, bias=bias), make_norm(d1), nn.ReLU(True),
              conv(d1, d2, 3, stride=2, padding=1, bias=bias), make_norm(d2), nn.ReLU(True)]
    layers += [block(d2, 4 * c[block_group(i, n_blocks)], norm, dropout)
               for i in range(n_blocks)]
    u1, u2 = 2 * c[6], c[7]
    layers += [convT(d2, u1, 3, stride=2, padding=1, output_padding=1, bias=bias),
               make_norm(u1), nn.ReLU(True),
               convT(u1, u2, 3, stride=2, padding=1, output_padding=1, bias=bias),
               make_norm(u2), nn.ReLU(True),
               nn.ReflectionPad2d(3), conv(u2, output_nc, 7), nn.Tanh()]
    return nn.Sequential(*layers)


class SubMobileResnetGenerator(SequentialGenerator):
    """A plain mobile ResNet generator with the widths of one channel config."""

    def __init__(self, config, input_nc=3, output_nc=3, norm="instance", dropout=0.0,
                 n_blocks=9):
        super().__init__()
        self.config = ChannelConfig.parse(config, lengths=(8,))
        self.n_blocks = n_blocks
        self.model = _build_layers(input_nc, output_nc, self.config, norm, dropout, n_blocks)


class MobileResnetGenerator(SubMobileResnetGenerator):
    """The uncompressed mobile student: every width equal to ngf."""

    def __init__(self, input_nc=3, output_nc=3, ngf=64, norm="instance", dropout=0.0,
                 n_blocks=9):
        super().__init__(ChannelConfig.uniform(ngf), input_nc, output_nc, norm, dropout,
                         n_blocks)


# ---------------------------------------------------------------- super layers
def _norm(layer, x):
    """Apply a norm layer to the first x.shape[1] channels of its parameters and running
    statistics (batch norm: affine or not; ``momentum=None`` is the cumulative average, as
    in ``nn.BatchNorm2d``)."""
    if isinstance(layer, nn.BatchNorm2d):
        c = x.shape[1]
        use_batch = layer.training or layer.running_mean is None
        momentum = layer.momentum
        if layer.training and layer.track_running_stats and layer.num_batches_tracked is not None:
            layer.num_batches_tracked.add_(1)
            if momentum is None:
                momentum = 1.0 / float(layer.num_batches_tracked)

        def first(t):
            return None if t is None else t[:c]
        return F.batch_norm(x, first(layer.running_mean), first(layer.running_var),
                            first(layer.weight), first(layer.bias), use_batch,
                            momentum or 0.0, layer.eps)
    if isinstance(layer, nn.InstanceNorm2d) and not layer.affine:
        return F.instance_norm(x, eps=layer.eps)
    return layer(x)


class SuperConv2d(nn.Conv2d):
    """Conv2d whose forward uses the first ``out_channels`` filters over the input's width."""

    def forward(self, x, out_channels=None):
        ic = x.shape[1]
        if self.groups > 1:  # depthwise: one filter per input channel
            w, groups, oc = self.weight[:ic], ic, ic
        else:
            oc = self.out_channels if out_channels is None else out_channels
            w, groups = self.weight[:oc, :ic], 1
        b = None if self.bias is None else self.bias[:oc]
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, groups)


class SuperConvTranspose2d(nn.ConvTranspose2d):
    def forward(self, x, out_channels=None):
        ic = x.shape[1]
        oc = self.out_channels if out_channels is None else out_channels
        w = self.weight[:ic, :oc]
        b = None if self.bias is None else self.bias[:oc]
        return F.conv_transpose2d(x, w, b, self.stride, self.padding, self.output_padding, 1,
                                  self.dilation)


class SuperSeparableConv2d(SeparableConv2d):
    def __init__(self, in_channels, out_channels, kernel_size=3, padding=0, norm="instance"):
        super().__init__(in_channels, out_channels, kernel_size, padding, norm)
        dw, pw = self.conv[0], self.conv[2]
        self.conv[0] = SuperConv2d(in_channels, in_channels, kernel_size, padding=padding,
                                   groups=in_channels, bias=dw.bias is not None)
        self.conv[2] = SuperConv2d(in_channels, out_channels, 1, bias=pw.bias is not None)

    def forward(self, x, out_channels=None):
        x = self.conv[0](x)
        x = _norm(self.conv[1], x)
        return self.conv[2](x, out_channels)


class SuperMobileResnetBlock(MobileResnetBlock):
    def __init__(self, dim, inner, norm="instance", dropout=0.0):
        super().__init__(dim, inner, norm, dropout)
        self.conv_block[1] = SuperSeparableConv2d(dim, inner, 3, norm=norm)
        self.conv_block[6] = SuperSeparableConv2d(inner, dim, 3, norm=norm)

    def forward(self, x, inner=None):
        cb = self.conv_block
        y = cb[1](cb[0](x), inner)
        y = cb[4](cb[3](_norm(cb[2], y)))
        y = cb[6](cb[5](y), x.shape[1])
        return x + _norm(cb[7], y)


class SuperMobileResnetGenerator(SequentialGenerator):
    """Once-for-all supernet: ``forward(x, config)`` runs the sub-network ``config``."""

    def __init__(self, input_nc=3, output_nc=3, ngf=64, norm="instance", dropout=0.0,
                 n_blocks=9):
        super().__init__()
        self.ngf, self.n_blocks, self.output_nc = ngf, n_blocks, output_nc
        self.model = _build_layers(input_nc, output_nc, ChannelConfig.uniform(ngf), norm,
                                   dropout, n_blocks, conv=SuperConv2d,
                                   convT=SuperConvTranspose2d, block=SuperMobileResnetBlock)

    @property
    def largest(self) -> ChannelConfig:
        return ChannelConfig.uniform(self.ngf)

    @staticmethod
    def parse_config(config) -> ChannelConfig:
        """An 8-number channel config, or the legacy 6-number form."""
        return ChannelConfig.parse(config, lengths=(8,))

    def _check(self, config) -> ChannelConfig:
        cfg = self.largest if config is None else self.parse_config(config)
        too_wide = [i for i, c in enumerate(cfg) if c > self.ngf]
        if too_wide:
            i = too_wide[0]
            raise ConfigError(f"channel config {cfg}: width {cfg[i]} at position {i} exceeds "
                              f"the supernet's ngf {self.ngf}")
        return cfg

    def forward(self, x, config=None):
        return self.forward_features(x, config, points=())[0]

    def forward_features(self, x, config=None, points=None):
        cfg = self._check(config)
        widths = layer_widths(cfg, self.n_blocks, self.output_nc)
        wanted = self.feature_points if points is None else {
            p: self.feature_points[p] for p in points}
        by_index = {i: name for name, i in wanted.items()}
        feats = {}
        for i, layer in enumerate(self.model):
            if i in widths:
                x = layer(x, widths[i])
            elif isinstance(layer, SuperMobileResnetBlock):
                x = layer(x, 4 * cfg[block_group(i - FIRST_BLOCK, self.n_blocks)])
            elif isinstance(layer, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                x = _norm(layer, x)
            else:
                x = layer(x)
            if i in by_index:
                feats[by_index[i]] = x
        return x, feats


def within_supernet(cfg: ChannelConfig, ngf: int, names) -> ChannelConfig:
    """``cfg`` if no width exceeds the supernet's ``ngf``; else a one-line error naming the
    first position too wide (``names[i]``: the position's name)."""
    too_wide = [i for i, c in enumerate(cfg) if c > ngf]
    if too_wide:
        i = too_wide[0]
        raise ConfigError(f"channel config {cfg}: width {cfg[i]} at position {i} "
                          f"({names[i]}) exceeds the supernet's ngf {ngf}")
    return cfg


def slice_state_dict(source: dict, target_shapes: dict) -> dict:
    """Take the first-k entries along every dimension of each source tensor."""
    out = {}
    for key, shape in target_shapes.items():
        if key not in source:
            raise ConfigError(f"supernet has no parameter {key!r}")
        t = source[key]
        if t.dim() == 0:
            out[key] = t.clone()
            continue
        if any(s > ts for s, ts in zip(shape, t.shape)):
            raise ConfigError(f"parameter {key}: sub-network shape {tuple(shape)} is wider than "
                              f"the supernet's {tuple(t.shape)}")
        out[key] = t[tuple(slice(0, s) for s in shape)].clone()
    return out


@torch.no_grad()
def extract_subnet(supernet: SuperMobileResnetGenerator, config) -> SubMobileResnetGenerator:
    """A plain sub generator whose output equals ``supernet(x, config)``."""
    cfg = supernet._check(config)
    first = supernet.model[1]
    norm = "batch" if any(isinstance(m, nn.BatchNorm2d) for m in supernet.modules()) else (
        "instance" if any(isinstance(m, nn.InstanceNorm2d) for m in supernet.modules())
        else "none")
    dropout = next((m.p for m in supernet.modules() if isinstance(m, nn.Dropout)), 0.0)
    sub = SubMobileResnetGenerator(cfg, first.in_channels, supernet.output_nc, norm, dropout,
                                   supernet.n_blocks)
    shapes = {k: v.shape for k, v in sub.state_dict().items()}
    sub.load_state_dict(slice_state_dict(supernet.state_dict(), shapes), strict=True)
    return sub.train(supernet.training)
