"""The training stages' view of the model families (plain PyTorch, no Ray).

The teacher, supernet and fine-tune loops are one code path; what differs between model
families (the discriminator, what it sees, the generator's task loss) is the family's
adversary (:meth:`ganc.families.Family.adversary`; :mod:`ganc.families.resnet`,
:mod:`ganc.families.spade`). :func:`adversary` picks the family from the generator's name;
:func:`optimizers` builds the G / D Adam pair with the section's ``lr`` / ``lr_D`` (TTUR)
and ``beta1`` / ``beta2``.
"""
from __future__ import annotations

import torch

from ..families import family_of


def base_lrs(section) -> dict:
    """``{optimizer: base LR}``: the generator's ``lr``, the discriminator's ``lr_D``
    (0: ``lr``)."""
    lr = float(section.lr)
    return {"G": lr, "D": float(getattr(section, "lr_D", 0.0) or 0.0) or lr}


def optimizers(section, g_params, d_params) -> dict:
    betas = (float(section.beta1), float(getattr(section, "beta2", 0.999)))
    lrs = base_lrs(section)
    return {"G": torch.optim.Adam(g_params, lr=lrs["G"], betas=betas),
            "D": torch.optim.Adam(d_params, lr=lrs["D"], betas=betas)}


def adversary(cfg, netG: str, weights: dict, paired: bool, device):
    """The adversarial terms of generator ``netG``'s family."""
    return family_of(netG).adversary(cfg, weights, paired, device)


def input_nc_of(netG: str) -> int:
    """Input channels of a generator family (3: an image; SPADE: the one-hot label map)."""
    return int(family_of(netG).input_nc)


__all__ = ["adversary", "optimizers", "base_lrs", "input_nc_of"]
