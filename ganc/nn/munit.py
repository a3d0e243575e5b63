"""MUNIT generators in GAN Compression's layout: teacher, mobile and sub (the supernets are
in :mod:`ganc.nn.munit_super`).

MUNIT (Huang et al., ECCV 2018; GAN Compression's ``munit_architecture`` at its defaults:
``n_downsample`` 2, ``n_res`` 4, ``style_dim`` 8, ``mlp_dim`` 256, ReLU, reflection padding)
maps an image and a style code to an image:

- ``enc_content``: 7x7 conv (stem), two 4x4 stride-2 convs (the second's output is the
  trunk), four residual blocks; every conv followed by a non-affine instance norm. Its
  output is the content code.
- ``enc_style``: 7x7 conv, four 4x4 stride-2 convs (widths s, 2s, 4s, 4s, 4s), no norm,
  global average pooling, a 1x1 conv to ``style_dim`` numbers. It encodes a reference
  image's style; translating with a sampled style code skips it.
- ``mlp``: three linear layers (``style_dim`` -> ``mlp_dim`` -> ``mlp_dim`` -> the AdaIN
  parameters of the decoder), ReLU between them.
- ``dec``: four residual blocks whose norms are AdaIN (instance norm, then per image the
  scale and shift the MLP made from the style code), two [2x nearest upsampling, 5x5 conv,
  layer norm] stages, a 7x7 conv and tanh.

Every conv is preceded by reflection padding; a residual block is [conv 3x3, norm, ReLU,
conv 3x3, norm] plus the skip. Module names follow the reference (``enc_content.model.3.
model.0.model.1.conv``), so one layout serves teacher, sub and super.

The 10-number channel config (``ganc.space``'s ``munit`` positions, the reference's
``channels-64`` order): [0] style encoder base s; [1] stem; [2] first downsampling
(output 2x); [3] second (output 4x, the trunk); [4], [5] inner width / 4 of content residual
blocks 1-2 and 3-4; [6], [7] the same for the decoder's AdaIN blocks; [8], [9] the two
upsampling convs (outputs 2x and 1x). ``16_16_16_24_56_16_40_40_32_24`` is the released
compressed edges2shoes model's.

Variants: ``MunitGenerator(ngf)`` (the teacher: plain convs; ``munit``);
``MobileMunitGenerator(ngf)`` (the residual blocks' and upsampling convs are separable:
depthwise kxk, instance norm, pointwise 1x1); ``SubMobileMunitGenerator(config)`` (the mobile
net at a config's widths). ``forward(x, style=None)``: without ``style`` the style code is
encoded from ``x`` (the reference's reconstruction path, what its MACs count).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..space import MUNIT_POSITION_NAMES, ChannelConfig
from .mobile import SeparableConv2d

POSITIONS = MUNIT_POSITION_NAMES
N_POSITIONS = len(POSITIONS)
STYLE_DIM = 8
MLP_DIM = 256
N_RES = 4                          # residual blocks in each of content encoder and decoder
STYLE_DOWN = 4                     # stride-2 convs of the style encoder
POINTS = ("down2", "content", "adain")    # named distillation points
EPS = 1e-5


def parse_config(config) -> ChannelConfig:
    """A 10-number MUNIT channel config."""
    return ChannelConfig.parse(config, legacy=False, lengths=(N_POSITIONS,))


@dataclass(frozen=True)
class MunitWidths:
    """Every width of a MUNIT generator under a channel config: the one source of truth for
    the modules, the supernet's slicing and the closed-form cost model."""

    style: tuple[int, ...]        # the style encoder's five convs
    stem: int
    down1: int
    trunk: int                    # second downsampling = content code = decoder trunk
    enc_inner: tuple[int, ...]    # inner width of content residual blocks 1..4
    dec_inner: tuple[int, ...]    # inner width of AdaIN residual blocks 1..4
    up: tuple[int, int]

    @property
    def adain_sizes(self) -> tuple[int, ...]:
        """Channels of each AdaIN, in decoder order (two per block)."""
        return tuple(c for inner in self.dec_inner for c in (inner, self.trunk))

    @property
    def n_adain_params(self) -> int:
        return 2 * sum(self.adain_sizes)


def widths(config) -> MunitWidths:
    c = parse_config(config)
    s = c[0]
    return MunitWidths(style=(s, 2 * s, 4 * s, 4 * s, 4 * s), stem=c[1], down1=2 * c[2],
                       trunk=4 * c[3], enc_inner=(4 * c[4],) * 2 + (4 * c[5],) * 2,
                       dec_inner=(4 * c[6],) * 2 + (4 * c[7],) * 2, up=(2 * c[8], c[9]))


def check_style(style: torch.Tensor, style_dim: int, batch: int) -> torch.Tensor:
    """``style`` as (N, style_dim); a code of another length is a one-line error."""
    shape = tuple(style.shape)
    ok = (style.dim() == 2 or (style.dim() == 4 and shape[2:] == (1, 1)))
    if not ok or shape[1] != style_dim:
        raise ConfigError(f"style code of shape {shape}: this MUNIT generator takes "
                          f"{style_dim} numbers per image, (N, {style_dim}) or "
                          f"(N, {style_dim}, 1, 1)")
    if shape[0] != batch and shape[0] != 1:      # (batch first: no guard under export)
        raise ConfigError(f"style code of shape {shape}: {shape[0]} codes for {batch} images")
    return style.reshape(shape[0], style_dim).expand(batch, style_dim)


def adain(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Instance norm of ``x`` (N, C, H, W), then per image ``* gamma + beta`` with
    ``params`` = [beta (C), gamma (C)] per image (the reference's mean / std order)."""
    c = x.shape[1]
    beta, gamma = params[:, :c, None, None], params[:, c:2 * c, None, None]
    return F.instance_norm(x, eps=EPS) * gamma + beta


class LayerNorm(nn.Module):
    """MUNIT's layer norm: per image over (C, H, W), ``(x - mean) / (std + eps)`` with the
    unbiased std, then a per-channel ``gamma`` (uniform init) and ``beta``."""

    def __init__(self, channels: int):
        super().__init__()
        self.num_features = channels
        self.gamma = nn.Parameter(torch.rand(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        c = x.shape[1]
        flat = x.flatten(1)
        mean = flat.mean(1)
        std = ((flat - mean[:, None]).pow(2).sum(1) / (flat.shape[1] - 1)).sqrt()
        x = (x - mean[:, None, None, None]) / (std[:, None, None, None] + EPS)
        return x * self.gamma[None, :c, None, None] + self.beta[None, :c, None, None]


def _padding(kernel: int, stride: int) -> int:
    return 1 if stride == 2 else kernel // 2


class ConvBlock(nn.Module):
    """MUNIT's Conv2dBlock: reflection pad, conv (plain or separable), norm, activation.
    ``norm``: ``in`` (non-affine instance norm), ``ln`` (:class:`LayerNorm`), ``adain``
    (parameters given to ``forward``) or ``none``; ``act``: ``relu``, ``tanh`` or ``none``."""

    conv_class = nn.Conv2d
    separable_class = SeparableConv2d
    layer_norm_class = LayerNorm

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: str = "none",
                 act: str = "relu", separable: bool = False):
        super().__init__()
        self.pad = nn.ReflectionPad2d(_padding(kernel, stride))
        if separable:
            if stride != 1:
                raise ConfigError("MUNIT's separable convs have stride 1")
            self.conv = self.separable_class(cin, cout, kernel, padding=0, norm="instance")
        else:
            self.conv = self.conv_class(cin, cout, kernel, stride)
        self.norm_kind, self.act = norm, act
        if norm == "in":
            self.norm = nn.InstanceNorm2d(cout)
        elif norm == "ln":
            self.norm = self.layer_norm_class(cout)

    def _post(self, x, params=None):
        if self.norm_kind == "in":
            x = F.instance_norm(x, eps=EPS)
        elif self.norm_kind == "ln":
            x = self.norm(x)
        elif self.norm_kind == "adain":
            x = adain(x, params)
        if self.act == "relu":
            return F.relu(x)
        return torch.tanh(x) if self.act == "tanh" else x

    def forward(self, x, params=None, width=None):
        """``width``: ignored here (the plain conv has one); the supernet's blocks use it."""
        return self._post(self.conv(self.pad(x)), params)


class ResBlock(nn.Module):
    """[ConvBlock dim->inner, norm, ReLU; ConvBlock inner->dim, norm] + x (run by the
    generator's walk, which hands each norm its AdaIN parameters)."""

    block_class = ConvBlock

    def __init__(self, dim: int, inner: int, norm: str, separable: bool):
        super().__init__()
        self.model = nn.Sequential(
            self.block_class(dim, inner, 3, 1, norm, "relu", separable),
            self.block_class(inner, dim, 3, 1, norm, "none", separable))


class ResBlocks(nn.Module):
    def __init__(self, dim: int, inners, norm: str, separable: bool, block=ResBlock):
        super().__init__()
        self.model = nn.Sequential(*[block(dim, i, norm, separable) for i in inners])


def style_encoder_layers(input_nc: int, w: MunitWidths, style_dim: int, block=ConvBlock,
                         conv=nn.Conv2d) -> nn.Sequential:
    s = w.style
    layers = [block(input_nc, s[0], 7, 1, "none", "relu")]
    layers += [block(a, b, 4, 2, "none", "relu") for a, b in zip(s[:-1], s[1:])]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), conv(s[-1], style_dim, 1))


class _Holder(nn.Module):
    """A module holding ``model`` (the reference's ``enc_style`` / ``enc_content`` / ``dec``
    / ``mlp`` wrappers), so state-dict keys read ``enc_content.model.<i>``."""

    def __init__(self, model: nn.Sequential):
        super().__init__()
        self.model = model


class LinearBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.fc = nn.Linear(cin, cout)


def mlp_layers(style_dim: int, mlp_dim: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(LinearBlock(style_dim, mlp_dim), LinearBlock(mlp_dim, mlp_dim),
                         LinearBlock(mlp_dim, n_out))


class _MunitBase(nn.Module):
    """Construction and the walk through the network shared by every variant."""

    block_class = ConvBlock
    res_class = ResBlock
    conv_class = nn.Conv2d

    def __init__(self, config, input_nc=3, output_nc=3, style_dim=STYLE_DIM, mlp_dim=MLP_DIM,
                 separable=True):
        super().__init__()
        self.config = parse_config(config)
        self.input_nc, self.output_nc = int(input_nc), int(output_nc)
        self.style_dim, self.mlp_dim, self.separable = int(style_dim), int(mlp_dim), separable
        w = self.widths = widths(self.config)
        B, R = self.block_class, self.res_class
        self.enc_style = _Holder(style_encoder_layers(input_nc, w, style_dim, B,
                                                      self.conv_class))
        self.enc_content = _Holder(nn.Sequential(
            B(input_nc, w.stem, 7, 1, "in"), B(w.stem, w.down1, 4, 2, "in"),
            B(w.down1, w.trunk, 4, 2, "in"),
            ResBlocks(w.trunk, w.enc_inner, "in", separable, R)))
        self.dec = _Holder(nn.Sequential(
            ResBlocks(w.trunk, w.dec_inner, "adain", separable, R),
            nn.Upsample(scale_factor=2), B(w.trunk, w.up[0], 5, 1, "ln", "relu", separable),
            nn.Upsample(scale_factor=2), B(w.up[0], w.up[1], 5, 1, "ln", "relu", separable),
            B(w.up[1], output_nc, 7, 1, "none", "tanh")))
        self.mlp = _Holder(mlp_layers(style_dim, mlp_dim, w.n_adain_params))

    @property
    def extra_inputs(self) -> dict[str, tuple[int, ...]]:
        """What ``forward`` takes beside the image (``ganc.extras``): the style code."""
        return {"style": (self.style_dim,)}

    @property
    def feature_points(self) -> dict[str, str]:
        """Named distillation points: the second downsampling's output, the content code
        (what the reference distils), the decoder after its AdaIN blocks."""
        return {p: p for p in POINTS}

    def _check_input(self, x):
        if x.dim() != 4 or x.shape[1] != self.input_nc:
            raise ConfigError(f"{type(self).__name__} expects images of shape "
                              f"(N, {self.input_nc}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % 4 or x.shape[3] % 4:
            raise ConfigError(f"MUNIT input {tuple(x.shape[2:])} (HxW): sides must be "
                              "multiples of 4")

    def _walk(self, x, style, points, w: MunitWidths):
        """Output and features; ``w``: the widths run (the supernet's are a config's)."""
        wanted = set(POINTS if points is None else points)
        unknown = wanted - set(POINTS)
        if unknown:
            raise ConfigError(f"unknown MUNIT feature points {sorted(unknown)}; named points: "
                              + ", ".join(POINTS))
        self._check_input(x)
        style = (self._encode_style(x, w) if style is None
                 else check_style(style, self.style_dim, x.shape[0]))
        feats = {}
        h = self._encode(x, w, feats, wanted)
        return self._decode(h, style, w, feats, wanted), feats

    def _encode(self, x, w: MunitWidths, feats: dict, wanted) -> torch.Tensor:
        enc = self.enc_content.model
        h = x
        for i, width in enumerate((w.stem, w.down1, w.trunk)):
            h = self._conv(enc[i], h, width)
        if "down2" in wanted:
            feats["down2"] = h
        for blk, inner in zip(enc[3].model, w.enc_inner):
            h = self._res(blk, h, inner, None)
        if "content" in wanted:
            feats["content"] = h
        return h

    def _decode(self, h, style, w: MunitWidths, feats: dict, wanted) -> torch.Tensor:
        params = self._adain_params(style, w)
        dec, at = self.dec.model, 0
        for blk, inner in zip(dec[0].model, w.dec_inner):
            n = 2 * (inner + w.trunk)
            h = self._res(blk, h, inner, params[:, at:at + n])
            at += n
        if "adain" in wanted:
            feats["adain"] = h
        h = self._conv(dec[2], dec[1](h), w.up[0])
        h = self._conv(dec[4], dec[3](h), w.up[1])
        return self._conv(dec[5], h, self.output_nc)

    @staticmethod
    def _conv(block, x, width, params=None):
        return block(x, params, width)

    @staticmethod
    def _res(block, x, inner, params):
        """Residual block at inner width ``inner``; ``params``: [beta, gamma] of its first
        AdaIN then of its second (None: instance norms)."""
        p0 = p1 = None
        if params is not None:
            p0, p1 = params[:, :2 * inner], params[:, 2 * inner:]
        y = block.model[0](x, p0, inner)
        return x + block.model[1](y, p1, x.shape[1])

    def _mlp(self, style):
        m = self.mlp.model
        h = F.relu(m[0].fc(style))
        return m[2].fc(F.relu(m[1].fc(h)))

    def _adain_params(self, style, w: MunitWidths):
        return self._mlp(style)

    def _encode_style(self, x, w: MunitWidths):
        m = self.enc_style.model
        h = x
        for block, width in zip(m[:-2], w.style):
            h = block(h, None, width)
        return self._head(m[-1], m[-2](h)).flatten(1)

    def _head(self, conv, h):
        return conv(h)

    def encode_style(self, x) -> torch.Tensor:
        """The (N, style_dim) style code of images ``x``."""
        self._check_input(x)
        return self._encode_style(x, self.widths)

    def encode_content(self, x) -> torch.Tensor:
        """The content code of images ``x`` (the content encoder's output)."""
        self._check_input(x)
        return self._encode(x, self.widths, {}, ())

    def decode(self, content, style) -> torch.Tensor:
        """Images from content codes and (N, style_dim) style codes."""
        return self._decode(content, check_style(style, self.style_dim, content.shape[0]),
                            self.widths, {}, ())


class SubMobileMunitGenerator(_MunitBase):
    """A plain MUNIT generator at the widths of one channel config (``separable=False``:
    the teacher's plain convs, what ``super_munit`` slices to)."""

    def __init__(self, config, input_nc=3, output_nc=3, style_dim=STYLE_DIM, mlp_dim=MLP_DIM,
                 separable=True):
        super().__init__(config, input_nc, output_nc, style_dim, mlp_dim, separable)

    def forward(self, x, style=None):
        return self._walk(x, style, (), self.widths)[0]

    def forward_features(self, x, points=None, style=None):
        """Output and a dict of the features at the named points (all by default)."""
        return self._walk(x, style, points, self.widths)


class MobileMunitGenerator(SubMobileMunitGenerator):
    """The uncompressed mobile student: every position at ``ngf``."""

    def __init__(self, input_nc=3, output_nc=3, ngf=64, style_dim=STYLE_DIM, mlp_dim=MLP_DIM):
        super().__init__(ChannelConfig.uniform(ngf, N_POSITIONS), input_nc, output_nc,
                         style_dim, mlp_dim)
        self.ngf = ngf


class MunitGenerator(SubMobileMunitGenerator):
    """The teacher: MUNIT's AdaIN generator with plain convs (77.3G MACs at 256x256 with
    its style encoder, the reference's count)."""

    def __init__(self, input_nc=3, output_nc=3, ngf=64, style_dim=STYLE_DIM, mlp_dim=MLP_DIM):
        super().__init__(ChannelConfig.uniform(ngf, N_POSITIONS), input_nc, output_nc,
                         style_dim, mlp_dim, separable=False)
        self.ngf = ngf


__all__ = ["MunitGenerator", "MobileMunitGenerator", "SubMobileMunitGenerator", "MunitWidths",
           "widths", "parse_config", "check_style", "adain", "LayerNorm", "ConvBlock",
           "ResBlock", "POINTS", "POSITIONS", "STYLE_DIM", "MLP_DIM"]
