"""Normalization layers as the field builds them."""
from __future__ import annotations

import functools

import torch.nn as nn

from ..errors import ConfigError

NORMS = ("instance", "batch", "none")


def norm_layer(norm: str):
    """Factory for a norm layer by name, and whether convs next to it carry a bias.

    Instance norm has no affine parameters and no running statistics, with conv bias
    (pytorch-CycleGAN-and-pix2pix); batch norm is affine, without conv bias.
    """
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False), True
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True), False
    if norm == "none":
        return (lambda c: nn.Identity()), True
    raise ConfigError(f"norm {norm!r} is not one of: {', '.join(NORMS)}")
