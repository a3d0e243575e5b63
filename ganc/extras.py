"""Inputs a generator takes beside the image (a MUNIT style code), drawn from a seed.

A generator that takes more than the image declares them as ``extra_inputs``: a dict of
forward keyword -> the shape of one image's value (MUNIT: ``{"style": (8,)}``); every other
generator declares none. Whoever runs a generator (training, scoring, export, translate)
draws them with :func:`draw_for` and calls ``net(x, **extra)``, so a teacher and its student
given the same seed see the same style codes. Families expose it as
:meth:`ganc.families.Family.draw_inputs`; the scorers below the families call this module.

Every value is N(0, 1), drawn per image from a CPU generator seeded by (``seed``, the image's
index): the same seed gives the same codes on every machine and for every batch size.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch

from .errors import ConfigError

_STRIDE = 1_000_003          # seeds of image i: seed * _STRIDE + i


def extra_shapes(net) -> dict[str, tuple[int, ...]]:
    """``net``'s extra inputs (keyword -> one image's shape); {} for an image-only net."""
    shapes = getattr(net, "extra_inputs", None) or {}
    return {str(k): tuple(int(d) for d in v) for k, v in dict(shapes).items()}


def draw(shapes: Mapping[str, Sequence[int]], batch: int, seed: int, first: int = 0,
         device=None) -> dict[str, torch.Tensor]:
    """Values of ``shapes`` for images ``first`` .. ``first + batch - 1`` (batch-first)."""
    out = {}
    for name in sorted(shapes):
        shape = tuple(int(d) for d in shapes[name])
        rows = []
        for i in range(int(batch)):
            g = torch.Generator().manual_seed(int(seed) * _STRIDE + int(first) + i)
            rows.append(torch.randn(shape, generator=g))
        value = torch.stack(rows) if rows else torch.zeros((0, *shape))
        out[name] = value.to(device) if device is not None else value
    return out


def draw_for(net, batch: int, seed: int, first: int = 0, device=None) -> dict:
    """:func:`draw` of ``net``'s extra inputs ({} for an image-only net)."""
    shapes = extra_shapes(net)
    return draw(shapes, batch, seed, first, device) if shapes else {}


def same_for_all(extra: Mapping[str, torch.Tensor], batch: int) -> dict:
    """Each value's first image repeated ``batch`` times (one style for a whole folder)."""
    return {k: v[:1].expand(batch, *v.shape[1:]) for k, v in extra.items()}


def check_seed(seed: Optional[int], net, flag: str = "--style-seed") -> None:
    """A seed given to a net that takes no extra inputs is a one-line error."""
    if seed is not None and not extra_shapes(net):
        raise ConfigError(f"{flag} {seed}: this generator takes no style code (only MUNIT "
                          "generators do)")


__all__ = ["extra_shapes", "draw", "draw_for", "same_for_all", "check_seed"]
