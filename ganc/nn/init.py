"""The field's weight initialisation for networks trained from scratch.

GAN Compression (``models/networks.py`` ``init_weights``, options ``--init_type normal
--init_gain 0.02``, the defaults of every released script) and pytorch-CycleGAN-and-pix2pix
initialise every module whose class name contains ``Conv`` or ``Linear`` with weights
N(0, gain) and zero biases, and every ``BatchNorm2d`` with weights N(1, gain) and zero
biases. Instance norm layers here have no affine parameters, so there is nothing to set
(the reference leaves ``InstanceNorm2d`` alone as well). The 1x1 distillation mappings get
the same treatment in the reference (``init_net(netA)``), so they use this function too.

Apply it where a model is built to be trained from scratch, never to loaded weights
(loading overwrites them anyway).
"""
from __future__ import annotations

import torch.nn as nn

INIT_GAIN = 0.02


def init_weights(net: nn.Module, gain: float = INIT_GAIN) -> nn.Module:
    """Initialise ``net`` in place as the reference does; returns ``net``."""
    for m in net.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net
