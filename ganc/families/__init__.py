"""Model families: what a family of generators decides, in one module per family.

``resnet`` (pix2pix, CycleGAN; :mod:`ganc.families.resnet`), ``spade`` (GauGAN;
:mod:`ganc.families.spade`), ``unet`` (pix2pix's default U-Net; :mod:`ganc.families.unet`)
and ``munit`` (MUNIT; :mod:`ganc.families.munit`). Code outside this package asks a family
instead of testing its name::

    fam = family_of(cfg.model.student)      # or get_family("spade")
    fam.input_shape(cfg.data), fam.cost_model(payload, size), fam.adversary(cfg, ...)

Adding a family means adding one module that subclasses :class:`Family`, calls
:func:`register_family` and is imported below.
"""
from .base import (Family, check_prunable, family_for_data, family_names, family_of,
                   generator_names, get_family, register_family, supernet_names,
                   teacher_names)
from .resnet import RESNET
from .spade import SPADE
from .unet import UNET
from .munit import MUNIT  # noqa: I001  (registered last: family_for_data asks in order)

__all__ = ["Family", "register_family", "get_family", "family_names", "family_of",
           "family_for_data", "generator_names", "teacher_names", "supernet_names",
           "check_prunable",
           "RESNET", "SPADE", "UNET", "MUNIT"]
