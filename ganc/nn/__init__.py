"""Generator and discriminator zoo, in a registry by name (like timm's)."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ..errors import ConfigError
from .discriminator import NLayerDiscriminator
from .init import init_weights
from .mobile import (MobileResnetGenerator, SubMobileResnetGenerator,
                     SuperMobileResnetGenerator, extract_subnet)
from .resnet import ResnetGenerator

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn
    return wrap


def names() -> list[str]:
    return sorted(_REGISTRY)


def build(name: str, **kw) -> nn.Module:
    """Build a registered model by name; unknown names get a one-line error."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown network {name!r}; available: {', '.join(names())}")
    return _REGISTRY[name](**kw)


def build_for_training(name: str, **kw) -> nn.Module:
    """A registered model to be trained from scratch: built, then initialised the
    field's way (:func:`init_weights`: N(0, 0.02) convs, N(1, 0.02) batch-norm weights,
    zero biases)."""
    return init_weights(build(name, **kw))


@register("resnet_9blocks")
def resnet_9blocks(input_nc=3, output_nc=3, ngf=64, norm="instance", dropout=0.0, **_):
    return ResnetGenerator(input_nc, output_nc, ngf, norm, dropout, n_blocks=9)


@register("resnet_6blocks")
def resnet_6blocks(input_nc=3, output_nc=3, ngf=64, norm="instance", dropout=0.0, **_):
    return ResnetGenerator(input_nc, output_nc, ngf, norm, dropout, n_blocks=6)


@register("mobile_resnet_9blocks")
def mobile_resnet_9blocks(input_nc=3, output_nc=3, ngf=64, norm="instance", dropout=0.0, **_):
    return MobileResnetGenerator(input_nc, output_nc, ngf, norm, dropout, n_blocks=9)


@register("super_mobile_resnet_9blocks")
def super_mobile_resnet_9blocks(input_nc=3, output_nc=3, ngf=64, norm="instance", dropout=0.0,
                                **_):
    return SuperMobileResnetGenerator(input_nc, output_nc, ngf, norm, dropout, n_blocks=9)


@register("sub_mobile_resnet_9blocks")
def sub_mobile_resnet_9blocks(config=None, input_nc=3, output_nc=3, norm="instance",
                              dropout=0.0, **_):
    if config is None:
        raise ConfigError("sub_mobile_resnet_9blocks needs a channel config "
                          "(e.g. --config 16_16_32_16_32_32_16_16)")
    return SubMobileResnetGenerator(config, input_nc, output_nc, norm, dropout, n_blocks=9)


@register("pruned_resnet")
def pruned_resnet(widths=None, kind="resnet", input_nc=3, output_nc=3, norm="instance",
                  dropout=0.0, **_):
    """A generator sliced by the pruning agents (per-layer widths; see ganc.prune)."""
    if widths is None:
        raise ConfigError("pruned_resnet needs its widths (from the model card's 'widths')")
    from ..prune.gated import PrunedResnetGenerator
    return PrunedResnetGenerator(widths, kind, input_nc, output_nc, norm, dropout)


@register("n_layers")
def n_layers_discriminator(input_nc=3, ndf=64, n_layers=3, norm="batch", widths=None, **_):
    return NLayerDiscriminator(input_nc, ndf, n_layers, norm, widths)


GENERATORS = ("resnet_9blocks", "resnet_6blocks", "mobile_resnet_9blocks",
              "super_mobile_resnet_9blocks", "sub_mobile_resnet_9blocks", "pruned_resnet")
DISCRIMINATORS = ("n_layers",)

__all__ = ["build", "build_for_training", "init_weights", "register", "names", "extract_subnet", "GENERATORS", "DISCRIMINATORS",
           "ResnetGenerator", "MobileResnetGenerator", "SuperMobileResnetGenerator",
           "SubMobileResnetGenerator", "NLayerDiscriminator"]
