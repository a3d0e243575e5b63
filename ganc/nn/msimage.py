"""MUNIT's multiscale image discriminator (GAN Compression's ``ms_image``).

``num_scales`` (3) PatchGANs see the image at full, half and quarter size (3x3 average
pooling, stride 2, padding not counted, between scales). Each: a 4x4 stride-2 conv to
``ndf``, ``n_layers - 1`` more 4x4 stride-2 convs doubling the width, every one after
reflection padding 1 and followed by LeakyReLU 0.2, no norm; then a 1x1 conv to one logit
per patch. ``forward`` returns the list of the scales' logits (LSGAN averages over them).
"""
from __future__ import annotations

import torch.nn as nn

from ..errors import ConfigError


class MsImageDiscriminator(nn.Module):
    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 4,
                 num_scales: int = 3):
        super().__init__()
        if n_layers < 1 or num_scales < 1:
            raise ConfigError(f"ms_image discriminator: n_layers {n_layers} and num_scales "
                              f"{num_scales} must be >= 1")
        self.n_layers, self.num_scales = n_layers, num_scales
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.cnns = nn.ModuleList(self._scale(input_nc, ndf, n_layers)
                                  for _ in range(num_scales))

    @staticmethod
    def _scale(input_nc: int, ndf: int, n_layers: int) -> nn.Sequential:
        layers, cin, cout = [], input_nc, ndf
        for _ in range(n_layers):
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 4, 2),
                       nn.LeakyReLU(0.2, True)]
            cin, cout = cout, cout * 2
        return nn.Sequential(*layers, nn.Conv2d(cin, 1, 1))

    def forward(self, x):
        least = 2 ** (self.n_layers + self.num_scales - 1)
        if min(x.shape[-2:]) < least:
            raise ConfigError(f"ms_image discriminator ({self.num_scales} scales, n_layers "
                              f"{self.n_layers}): images of {tuple(x.shape[-2:])} are too "
                              f"small; sides of at least {least} (or lower model.n_layers_D)")
        outputs = []
        for cnn in self.cnns:
            outputs.append(cnn(x))
            x = self.downsample(x)
        return outputs


__all__ = ["MsImageDiscriminator"]
