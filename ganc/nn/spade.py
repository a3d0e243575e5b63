"""GauGAN (SPADE) generators in GAN Compression's layout: teacher, mobile, super and sub.

The network (Park et al., CVPR 2019, ``num_upsampling_layers`` ``normal`` or ``more``) maps a
one-hot label map (``input_nc`` channels; no instance map) to a photo:

    label map --nearest resize to 1/32 (1/64 with 'more')--> fc (3x3 conv)
      -> head_0 -> up -> G_middle_0 [-> up] -> G_middle_1 -> up -> up_0 -> up -> up_1
      -> up -> up_2 -> up -> up_3 -> LeakyReLU(0.2) -> conv_img (3x3) -> tanh

Every block is a SPADE residual block: ``conv_0(act(norm_0(x)))``, ``conv_1(act(norm_1(.)))``
(3x3 convs, LeakyReLU 0.2) plus a shortcut, learned (``norm_s`` then a 1x1 ``conv_s``) where
the width changes (``up_0``..``up_3``). Every ``norm_*`` is a SPADE modulation:
``param_free_norm(x) * (1 + mlp_gamma(a)) + mlp_beta(a)`` with ``a = ReLU(mlp_shared(seg))``,
the label map resized (nearest) to x. Widths at ``ngf``: fc and the first three blocks 16 ngf,
then up_0..up_3 output 8, 4, 2, 1 x ngf; the modulations have 2 ngf hidden channels.

Normalization, as in GAN Compression's SPADE code: the modulation's parameter-free norm is
batch norm without affine parameters (the reference's synchronised batch norm, here plain
per-process batch norm; ``norm="instance"`` gives SPADE's instance-norm variant); the
separable convs of the mobile variants hold a non-affine instance norm between their
depthwise and pointwise convs; no other layer is normalized. The reference trains with
spectral norm on the block convs and removes it before distillation and export; these
modules are the plain (spectral-norm-free) networks.

Variants (one module layout, so a sub-network's state dict is the supernet's sliced to
first-k channels along every dimension):

- ``SPADEGenerator(ngf)``: the teacher; 3x3 convs in ``mlp_gamma``/``mlp_beta``.
- ``MobileSPADEGenerator(ngf)``: ``mlp_gamma``/``mlp_beta`` are separable convs (depthwise
  3x3, instance norm, pointwise 1x1).
- ``SubMobileSPADEGenerator(config)``: the mobile network at the widths of a channel config
  (``ganc.space``: one number c per block; trunk 16 c at fc, inner 16 c in head_0 and the
  G_middle blocks, outputs 8/4/2/1 c at up_0..up_3, 2 c hidden channels per modulation).
- ``SuperMobileSPADEGenerator(ngf)``: the once-for-all supernet; ``forward(x, config)`` runs
  the sub-network of ``config`` by taking the first k channels of every layer (batch-norm
  running statistics included).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..space import SPADE_POSITION_NAMES, ChannelConfig
from .mobile import (SeparableConv2d, SuperConv2d, SuperSeparableConv2d, _norm,
                     slice_state_dict, within_supernet)

# The nets' default input: a one-hot CamVid label map, 11 classes + void. The same number as
# ganc.data.camvid.LABEL_NC (tests/test_camvid.py holds them equal); nn sits below data.
LABEL_NC = 12

POINTS = SPADE_POSITION_NAMES                     # fc, head_0, ..., up_3
WIDTH_MULTIPLIER = dict(zip(POINTS, (16, 16, 16, 16, 8, 4, 2, 1)))
UPSAMPLING_LAYERS = {"normal": 5, "more": 6}      # 2x nearest upsamplings in the network
PARAM_FREE_NORMS = ("batch", "instance")
SLOPE = 0.2                                       # LeakyReLU slope


@dataclass(frozen=True)
class BlockSpec:
    """Widths of one SPADE residual block under a channel config."""

    name: str
    cin: int
    cout: int
    inner: int                # width between conv_0 and conv_1 (fmiddle)
    hidden: int               # hidden channels of each SPADE modulation
    learned_shortcut: bool
    upsample_before: bool     # a 2x nearest upsampling precedes the block


def parse_config(config) -> ChannelConfig:
    """An 8-number SPADE channel config (no legacy 6-number form)."""
    return ChannelConfig.parse(config, legacy=False, lengths=(8,))


def layout(config, upsampling: str = "normal") -> tuple[int, tuple[BlockSpec, ...]]:
    """Width of ``fc`` and the widths of the seven blocks: the one source of truth for the
    modules, the supernet's slicing and the closed-form cost model."""
    if upsampling not in UPSAMPLING_LAYERS:
        raise ConfigError(f"num_upsampling_layers {upsampling!r} is not one of: "
                          + ", ".join(UPSAMPLING_LAYERS))
    c = dict(zip(POINTS, parse_config(config)))
    fc = trunk = WIDTH_MULTIPLIER["fc"] * c["fc"]
    blocks = []
    for name in POINTS[1:]:
        learned = name.startswith("up_")
        cout = WIDTH_MULTIPLIER[name] * c[name] if learned else trunk
        inner = cout if learned else WIDTH_MULTIPLIER[name] * c[name]
        up = name != "head_0" and (name != "G_middle_1" or upsampling == "more")
        blocks.append(BlockSpec(name, trunk, cout, inner, 2 * c[name], learned, up))
        trunk = cout
    return fc, tuple(blocks)


def latent_size(height: int, width: int, upsampling: str = "normal") -> tuple[int, int]:
    """Size of the label map fed to ``fc``; the output has ``height`` x ``width``."""
    f = 2 ** UPSAMPLING_LAYERS[upsampling]
    if height % f or width % f or height < f or width < f:
        raise ConfigError(f"label map {height}x{width} (HxW): a SPADE generator with "
                          f"num_upsampling_layers {upsampling!r} needs height and width "
                          f"divisible by {f}")
    return height // f, width // f


def _check_norm(norm: str) -> str:
    if norm not in PARAM_FREE_NORMS:
        raise ConfigError(f"SPADE param-free norm {norm!r} is not one of: "
                          + ", ".join(PARAM_FREE_NORMS))
    return norm


def _param_free_norm(norm: str, channels: int) -> nn.Module:
    if _check_norm(norm) == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    return nn.InstanceNorm2d(channels, affine=False)


def _actv(x):
    return F.leaky_relu(x, SLOPE)


# ---------------------------------------------------------------- plain modules
class SPADE(nn.Module):
    """Spatially-adaptive normalization of ``channels`` features by a label map."""

    def __init__(self, channels: int, label_nc: int, hidden: int, separable: bool,
                 norm: str = "batch"):
        super().__init__()
        self.param_free_norm = _param_free_norm(norm, channels)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        if separable:
            self.mlp_gamma = SeparableConv2d(hidden, channels, 3, padding=1, norm="instance")
            self.mlp_beta = SeparableConv2d(hidden, channels, 3, padding=1, norm="instance")
        else:
            self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
            self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x, seg):
        normalized = self.param_free_norm(x)
        actv = self.mlp_shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    spade_class = SPADE

    def __init__(self, spec: BlockSpec, label_nc: int, separable: bool, norm: str = "batch",
                 conv=nn.Conv2d):
        super().__init__()
        self.learned_shortcut = spec.learned_shortcut
        self.conv_0 = conv(spec.cin, spec.inner, 3, padding=1)
        self.conv_1 = conv(spec.inner, spec.cout, 3, padding=1)
        if spec.learned_shortcut:
            self.conv_s = conv(spec.cin, spec.cout, 1, bias=False)
        make = self.spade_class
        self.norm_0 = make(spec.cin, label_nc, spec.hidden, separable, norm)
        self.norm_1 = make(spec.inner, label_nc, spec.hidden, separable, norm)
        if spec.learned_shortcut:
            self.norm_s = make(spec.cin, label_nc, spec.hidden, separable, norm)

    def forward(self, x, seg):
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(_actv(self.norm_0(x, seg)))
        dx = self.conv_1(_actv(self.norm_1(dx, seg)))
        return x_s + dx


class _SPADEGeneratorBase(nn.Module):
    """Shared construction and forward of every SPADE generator variant."""

    block_class = SPADEResnetBlock
    conv_class = nn.Conv2d

    def __init__(self, config, input_nc=LABEL_NC, output_nc=3, norm="batch", separable=True,
                 upsampling="normal"):
        super().__init__()
        self.config = parse_config(config)
        self.input_nc, self.output_nc = int(input_nc), int(output_nc)
        self.norm, self.separable, self.upsampling = _check_norm(norm), separable, upsampling
        fc, blocks = layout(self.config, upsampling)
        self.specs = blocks
        self.fc = self.conv_class(self.input_nc, fc, 3, padding=1)
        for spec in blocks:
            setattr(self, spec.name, self.block_class(spec, self.input_nc, separable, norm,
                                                      conv=self.conv_class))
        self.conv_img = self.conv_class(blocks[-1].cout, self.output_nc, 3, padding=1)

    @property
    def feature_points(self) -> dict[str, str]:
        """Named distillation points: the output of ``fc`` and of every block."""
        return {p: p for p in POINTS}

    def _check_input(self, seg):
        if seg.dim() != 4 or seg.shape[1] != self.input_nc:
            raise ConfigError(f"{type(self).__name__} expects a one-hot label map of shape "
                              f"(N, {self.input_nc}, H, W), got {tuple(seg.shape)}")
        return latent_size(seg.shape[2], seg.shape[3], self.upsampling)

    def _walk(self, seg, points, fc, block):
        wanted = set(POINTS if points is None else points)
        unknown = wanted - set(POINTS)
        if unknown:
            raise ConfigError(f"unknown SPADE feature points {sorted(unknown)}; named points: "
                              + ", ".join(POINTS))
        feats = {}
        x = fc(F.interpolate(seg, size=self._check_input(seg), mode="nearest"))
        if "fc" in wanted:
            feats["fc"] = x
        for spec in self.specs:
            if spec.upsample_before:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(spec, x, seg)
            if spec.name in wanted:
                feats[spec.name] = x
        return x, feats


class SubMobileSPADEGenerator(_SPADEGeneratorBase):
    """A plain mobile SPADE generator at the widths of one channel config."""

    def __init__(self, config, input_nc=LABEL_NC, output_nc=3, norm="batch",
                 upsampling="normal", separable=True):
        super().__init__(config, input_nc, output_nc, norm, separable, upsampling)

    def forward(self, seg):
        return self.forward_features(seg, points=())[0]

    def forward_features(self, seg, points=None):
        """Output and a dict of the features at the named points (all by default)."""
        x, feats = self._walk(seg, points, self.fc,
                              lambda spec, x, s: getattr(self, spec.name)(x, s))
        return torch.tanh(self.conv_img(_actv(x))), feats


class MobileSPADEGenerator(SubMobileSPADEGenerator):
    """The uncompressed mobile student: every position at ``ngf``."""

    def __init__(self, input_nc=LABEL_NC, output_nc=3, ngf=64, norm="batch",
                 upsampling="normal"):
        super().__init__(ChannelConfig.uniform(ngf), input_nc, output_nc, norm, upsampling)
        self.ngf = ngf


class SPADEGenerator(SubMobileSPADEGenerator):
    """The teacher (GauGAN's SPADE generator): full 3x3 convs in the modulations."""

    def __init__(self, input_nc=LABEL_NC, output_nc=3, ngf=64, norm="batch",
                 upsampling="normal"):
        super().__init__(ChannelConfig.uniform(ngf), input_nc, output_nc, norm, upsampling,
                         separable=False)
        self.ngf = ngf


# ---------------------------------------------------------------- super modules
class SuperSPADE(SPADE):
    def __init__(self, channels: int, label_nc: int, hidden: int, separable: bool = True,
                 norm: str = "batch"):
        if not separable:
            raise ConfigError("the SPADE supernet is the mobile (separable) variant")
        super().__init__(channels, label_nc, hidden, separable, norm)
        self.mlp_shared[0] = SuperConv2d(label_nc, hidden, 3, padding=1)
        self.mlp_gamma = SuperSeparableConv2d(hidden, channels, 3, padding=1, norm="instance")
        self.mlp_beta = SuperSeparableConv2d(hidden, channels, 3, padding=1, norm="instance")

    def forward(self, x, seg, hidden=None):
        normalized = _norm(self.param_free_norm, x)
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared[1](self.mlp_shared[0](seg, hidden))
        c = x.shape[1]
        return normalized * (1 + self.mlp_gamma(actv, c)) + self.mlp_beta(actv, c)


class SuperSPADEResnetBlock(SPADEResnetBlock):
    spade_class = SuperSPADE

    def forward(self, x, seg, spec: BlockSpec):
        h = spec.hidden
        x_s = (self.conv_s(self.norm_s(x, seg, h), spec.cout) if self.learned_shortcut
               else x)
        dx = self.conv_0(_actv(self.norm_0(x, seg, h)), spec.inner)
        dx = self.conv_1(_actv(self.norm_1(dx, seg, h)), spec.cout)
        return x_s + dx


class SuperMobileSPADEGenerator(_SPADEGeneratorBase):
    """Once-for-all supernet: ``forward(x, config)`` runs the sub-network ``config``."""

    block_class = SuperSPADEResnetBlock
    conv_class = SuperConv2d

    def __init__(self, input_nc=LABEL_NC, output_nc=3, ngf=64, norm="batch",
                 upsampling="normal"):
        super().__init__(ChannelConfig.uniform(ngf), input_nc, output_nc, norm, True,
                         upsampling)
        self.ngf = ngf

    @property
    def largest(self) -> ChannelConfig:
        return ChannelConfig.uniform(self.ngf)

    parse_config = staticmethod(parse_config)

    def _check(self, config) -> ChannelConfig:
        cfg = self.largest if config is None else self.parse_config(config)
        return within_supernet(cfg, self.ngf, POINTS)

    def forward(self, seg, config=None):
        return self.forward_features(seg, config, points=())[0]

    def forward_features(self, seg, config=None, points=None):
        cfg = self._check(config)
        fc_width, specs = layout(cfg, self.upsampling)
        by_name = {s.name: s for s in specs}
        x, feats = self._walk(seg, points, lambda s: self.fc(s, fc_width),
                              lambda spec, x, s: getattr(self, spec.name)(x, s,
                                                                         by_name[spec.name]))
        return torch.tanh(self.conv_img(_actv(x), self.output_nc)), feats


@torch.no_grad()
def extract_spade_subnet(supernet: SuperMobileSPADEGenerator, config) -> SubMobileSPADEGenerator:
    """A plain sub generator whose output equals ``supernet(x, config)``."""
    cfg = supernet._check(config)
    sub = SubMobileSPADEGenerator(cfg, supernet.input_nc, supernet.output_nc, supernet.norm,
                                  supernet.upsampling)
    shapes = {k: v.shape for k, v in sub.state_dict().items()}
    sub.load_state_dict(slice_state_dict(supernet.state_dict(), shapes), strict=True)
    return sub.train(supernet.training)


__all__ = ["SPADEGenerator", "MobileSPADEGenerator", "SubMobileSPADEGenerator",
           "SuperMobileSPADEGenerator", "extract_spade_subnet", "layout", "latent_size",
           "BlockSpec", "POINTS", "LABEL_NC"]
