"""Multiscale PatchGAN discriminator of pix2pixHD / SPADE (GauGAN), with its features.

``num_D`` PatchGAN discriminators see the (label map, image) pair at full size, half size,
...: between scales the input is average-pooled (3x3, stride 2, padding 1, padding not
counted). Each has ``n_layers`` 4x4 convs with padding 2 (ndf, 2 ndf, 4 ndf, 8 ndf capped
at 512; stride 2 except the last, which has stride 1), LeakyReLU 0.2 after each, then a 4x4
conv to one logit per patch. As in SPADE (``norm_D`` ``spectralinstance``) every conv but the
first and the last is followed by a non-affine instance norm and drops its bias, and every
conv carries spectral norm (``spectral=False`` leaves it out).

``forward`` returns, per scale, the list of every layer's output, the patch logits last:
the GAN loss reads the logits, feature matching the rest (``ganc.losses_spade``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError

KERNEL = 4
PADDING = 2               # ceil((4 - 1) / 2), SPADE's padw
MAX_WIDTH = 512
SLOPE = 0.2


class PatchDiscriminator(nn.Module):
    """One scale: ``model0`` .. ``model<n_layers>``, each a conv (+ norm) + LeakyReLU, the
    last a conv to patch logits."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4,
                 spectral: bool = True):
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"discriminator n_layers must be >= 1, got {n_layers}")
        sn = nn.utils.spectral_norm if spectral else (lambda m: m)
        self.n_layers = n_layers
        widths = [ndf] + [min(ndf * 2 ** i, MAX_WIDTH) for i in range(1, n_layers)]
        self.model0 = nn.Sequential(
            sn(nn.Conv2d(input_nc, widths[0], KERNEL, stride=2, padding=PADDING)),
            nn.LeakyReLU(SLOPE))
        for i in range(1, n_layers):
            stride = 1 if i == n_layers - 1 else 2
            setattr(self, f"model{i}", nn.Sequential(
                sn(nn.Conv2d(widths[i - 1], widths[i], KERNEL, stride=stride, padding=PADDING,
                             bias=False)),
                nn.InstanceNorm2d(widths[i], affine=False), nn.LeakyReLU(SLOPE)))
        setattr(self, f"model{n_layers}", nn.Sequential(
            sn(nn.Conv2d(widths[-1], 1, KERNEL, stride=1, padding=PADDING))))

    def forward(self, x) -> list[torch.Tensor]:
        feats = []
        for i in range(self.n_layers + 1):
            x = getattr(self, f"model{i}")(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """``discriminator_0`` .. ``discriminator_<num_D - 1>`` at successively halved sizes."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 4, num_D: int = 2,
                 spectral: bool = True):
        super().__init__()
        if num_D < 1:
            raise ConfigError(f"num_D must be >= 1, got {num_D}")
        self.num_D = num_D
        for i in range(num_D):
            setattr(self, f"discriminator_{i}",
                    PatchDiscriminator(input_nc, ndf, n_layers, spectral))

    def forward(self, x) -> list[list[torch.Tensor]]:
        out = []
        for i in range(self.num_D):
            out.append(getattr(self, f"discriminator_{i}")(x))
            if i + 1 < self.num_D:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        return out


__all__ = ["PatchDiscriminator", "MultiscaleDiscriminator"]
