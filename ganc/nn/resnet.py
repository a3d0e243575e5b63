"""ResNet generators of pytorch-CycleGAN-and-pix2pix (resnet_9blocks / resnet_6blocks).

The module layout (``model.<index>``, ``model.<index>.conv_block.<index>``) follows the
released checkpoints so that their ``latest_net_G.pth`` files load with strict matching.
"""
from __future__ import annotations

import torch.nn as nn

from .base import SequentialGenerator
from .norm import norm_layer


# Index of the optional Dropout inside ``ResnetBlock.conv_block``. pytorch-CycleGAN-and-pix2pix
# adds it only with dropout (second conv at ``conv_block.5`` without, ``.6`` with);
# GAN Compression's own ResnetBlock always holds it (second conv always ``.6``).
DROPOUT_SLOT = 4


class ResnetBlock(nn.Module):
    """pad, 3x3 conv, norm, ReLU, [dropout], pad, 3x3 conv, norm, plus the skip. ``inner``
    (default ``dim``) is the width between the two convs; pruning shrinks it. The dropout
    slot exists only with ``dropout > 0``, as in pytorch-CycleGAN-and-pix2pix; checkpoints
    of the other layout load through ``ganc.weights.fit_layout``."""

    def __init__(self, dim: int, norm: str = "instance", dropout: float = 0.0,
                 inner: int | None = None):
        super().__init__()
        make_norm, bias = norm_layer(norm)
        inner = dim if inner is None else inner
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, inner, 3, bias=bias), make_norm(inner),
                  nn.ReLU(True),
                  nn.ReflectionPad2d(1), nn.Conv2d(inner, dim, 3, bias=bias), make_norm(dim)]
        if dropout > 0:
            layers.insert(DROPOUT_SLOT, nn.Dropout(dropout))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(SequentialGenerator):
    """The teacher: 7x7 stem, two stride-2 downsamplings, n residual blocks, two
    transposed-conv upsamplings, 7x7 conv, tanh."""

    def __init__(self, input_nc=3, output_nc=3, ngf=64, norm="instance", dropout=0.0,
                 n_blocks=9):
        super().__init__()
        make_norm, bias = norm_layer(norm)
        self.n_blocks = n_blocks
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), make_norm(ngf),
                  nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                       make_norm(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1,
                                          output_padding=1, bias=bias),
                       make_norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
