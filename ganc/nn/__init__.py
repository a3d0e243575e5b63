"""Generator and discriminator zoo, in a registry by name (like timm's)."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ..errors import ConfigError
from .discriminator import NLayerDiscriminator
from .init import init_weights
from .msimage import MsImageDiscriminator
from .multiscale import MultiscaleDiscriminator
from .mobile import (MobileResnetGenerator, SubMobileResnetGenerator,
                     SuperMobileResnetGenerator)
from .mobile import extract_subnet as _extract_resnet_subnet
from .munit import STYLE_DIM, MobileMunitGenerator, MunitGenerator, SubMobileMunitGenerator
from .munit_super import (SuperMobileMunitGenerator, SuperMunitGenerator,
                          extract_munit_subnet)
from .pruned import PrunedResnetGenerator
from .resnet import ResnetGenerator
from .spade import (LABEL_NC, MobileSPADEGenerator, SPADEGenerator, SubMobileSPADEGenerator,
                    SuperMobileSPADEGenerator, extract_spade_subnet)
from .unet import LEVELS as UNET_LEVELS
from .unet import UnetGenerator
from .unet_mobile import (MobileUnetGenerator, SubMobileUnetGenerator, SuperMobileUnetGenerator,
                          extract_unet_subnet)

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
    return PrunedResnetGenerator(widths, kind, input_nc, output_nc, norm, dropout)


@register("spade")
def spade_generator(input_nc=LABEL_NC, output_nc=3, ngf=64, norm="batch", upsampling="normal", **_):
    """GauGAN's SPADE generator (the teacher); ``norm`` is the modulations' param-free norm."""
    return SPADEGenerator(input_nc, output_nc, ngf, norm, upsampling)


@register("mobile_spade")
def mobile_spade(input_nc=LABEL_NC, output_nc=3, ngf=64, norm="batch", upsampling="normal", **_):
    return MobileSPADEGenerator(input_nc, output_nc, ngf, norm, upsampling)


@register("super_mobile_spade")
def super_mobile_spade(input_nc=LABEL_NC, output_nc=3, ngf=48, norm="batch",
                       upsampling="normal", **_):
    return SuperMobileSPADEGenerator(input_nc, output_nc, ngf, norm, upsampling)


@register("sub_mobile_spade")
def sub_mobile_spade(config=None, input_nc=LABEL_NC, output_nc=3, norm="batch",
                     upsampling="normal", **_):
    if config is None:
        raise ConfigError("sub_mobile_spade needs a channel config "
                          "(e.g. --config 32_32_32_32_32_24_24_24)")
    return SubMobileSPADEGenerator(config, input_nc, output_nc, norm, upsampling)


@register("munit")
def munit_generator(input_nc=3, output_nc=3, ngf=64, style_dim=STYLE_DIM, **_):
    """MUNIT's AdaIN generator (the teacher): content and style encoders, MLP, decoder."""
    return MunitGenerator(input_nc, output_nc, ngf, style_dim)


@register("mobile_munit")
def mobile_munit(input_nc=3, output_nc=3, ngf=64, style_dim=STYLE_DIM, **_):
    return MobileMunitGenerator(input_nc, output_nc, ngf, style_dim)


@register("super_munit")
def super_munit(input_nc=3, output_nc=3, ngf=64, style_dim=STYLE_DIM, **_):
    return SuperMunitGenerator(input_nc, output_nc, ngf, style_dim)


@register("super_mobile_munit")
def super_mobile_munit(input_nc=3, output_nc=3, ngf=64, style_dim=STYLE_DIM, **_):
    return SuperMobileMunitGenerator(input_nc, output_nc, ngf, style_dim)


@register("sub_mobile_munit")
def sub_mobile_munit(config=None, input_nc=3, output_nc=3, style_dim=STYLE_DIM, **_):
    if config is None:
        raise ConfigError("sub_mobile_munit needs a channel config "
                          "(e.g. --config 16_16_16_24_56_16_40_40_32_24)")
    return SubMobileMunitGenerator(config, input_nc, output_nc, style_dim)
def _register_unet(name: str, levels: int) -> None:
    """pix2pix's U-Net ``name`` and its mobile and super variants (``mobile_<name>``,
    ``super_mobile_<name>``); batch norm and dropout 0.5 by default, as pix2pix trains it."""
    @register(name)
    def teacher(input_nc=3, output_nc=3, ngf=64, norm="batch", dropout=0.5, **_):
        return UnetGenerator(input_nc, output_nc, ngf, norm, dropout, levels)

    @register("mobile_" + name)
    def mobile(input_nc=3, output_nc=3, ngf=64, norm="batch", dropout=0.5, **_):
        return MobileUnetGenerator(input_nc, output_nc, ngf, norm, dropout, levels)

    @register("super_mobile_" + name)
    def supernet(input_nc=3, output_nc=3, ngf=64, norm="batch", dropout=0.5, **_):
        return SuperMobileUnetGenerator(input_nc, output_nc, ngf, norm, dropout, levels)


for _name, _levels in UNET_LEVELS.items():
    _register_unet(_name, _levels)


@register("sub_mobile_unet")
def sub_mobile_unet(config=None, input_nc=3, output_nc=3, norm="batch", dropout=0.5, **_):
    """A mobile U-Net sub-network; its levels are its config's length (8: unet_256's)."""
    if config is None:
        raise ConfigError("sub_mobile_unet needs a channel config, one number per level "
                          "(e.g. --config 32_32_32_32_32_32_32_32)")
    return SubMobileUnetGenerator(config, input_nc, output_nc, norm, dropout)


@register("n_layers")
def n_layers_discriminator(input_nc=3, ndf=64, n_layers=3, norm="batch", widths=None, **_):
    return NLayerDiscriminator(input_nc, ndf, n_layers, norm, widths)


@register("multi_scale")
def multi_scale_discriminator(input_nc=LABEL_NC + 3, ndf=64, n_layers=4, num_D=2,
                              spectral=True, **_):
    """SPADE's multiscale PatchGAN on (one-hot label map, image): 2 scales, 4 layers."""
    return MultiscaleDiscriminator(input_nc, ndf, n_layers, num_D, spectral)


@register("ms_image")
def ms_image_discriminator(input_nc=3, ndf=64, n_layers=4, num_scales=3, **_):
    """MUNIT's multiscale image discriminator: 3 scales of 4 stride-2 convs, no norm."""
    return MsImageDiscriminator(input_nc, ndf, n_layers, num_scales)


GENERATORS = ("resnet_9blocks", "resnet_6blocks", "mobile_resnet_9blocks",
              "super_mobile_resnet_9blocks", "sub_mobile_resnet_9blocks", "pruned_resnet",
              "spade", "mobile_spade", "super_mobile_spade", "sub_mobile_spade",
              "unet_256", "unet_128", "mobile_unet_256", "mobile_unet_128",
              "super_mobile_unet_256", "super_mobile_unet_128", "sub_mobile_unet",
              "munit", "mobile_munit", "super_munit", "super_mobile_munit", "sub_mobile_munit")
DISCRIMINATORS = ("n_layers", "multi_scale", "ms_image")

# Supernets: the generators that hold sub-networks (``forward(x, config)``; each parses its
# family's channel configs with ``parse_config``). Families: ``ganc.families``.
SUPERNETS = (SuperMobileResnetGenerator, SuperMobileSPADEGenerator, SuperMobileUnetGenerator,
             SuperMunitGenerator, SuperMobileMunitGenerator)


def extract_subnet(supernet: nn.Module, config) -> nn.Module:
    """The plain sub-network of ``supernet`` (any family) at ``config``, whose output
    equals ``supernet(x, config)``."""
    if isinstance(supernet, SuperMobileSPADEGenerator):
        return extract_spade_subnet(supernet, config)
    if isinstance(supernet, SuperMobileUnetGenerator):
        return extract_unet_subnet(supernet, config)
    if isinstance(supernet, (SuperMunitGenerator, SuperMobileMunitGenerator)):
        return extract_munit_subnet(supernet, config)
    return _extract_resnet_subnet(supernet, config)


__all__ = ["build", "build_for_training", "init_weights", "register", "names",
           "extract_subnet", "GENERATORS", "DISCRIMINATORS", "SUPERNETS", "ResnetGenerator",
           "MobileResnetGenerator", "SuperMobileResnetGenerator", "SubMobileResnetGenerator", "NLayerDiscriminator",
           "SPADEGenerator", "MobileSPADEGenerator", "SuperMobileSPADEGenerator",
           "SubMobileSPADEGenerator", "MultiscaleDiscriminator", "UnetGenerator",
           "MobileUnetGenerator", "SuperMobileUnetGenerator", "SubMobileUnetGenerator",
           "MunitGenerator", "MobileMunitGenerator", "SuperMunitGenerator",
           "SuperMobileMunitGenerator", "SubMobileMunitGenerator"]
