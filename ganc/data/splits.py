"""Which dataset split a run config names, as the datasets read it (no Ray, no training).

``eval_split`` (the evaluation split's folder name), ``build_split`` (the dataset object of
a split with the config's transforms) and ``split_size`` (its image count, counted from a
:class:`ganc.data.source.DataRef` without copying a URL dataset).
"""
from __future__ import annotations

from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .datasets import build_dataset


def eval_split(data) -> str:
    """The evaluation split; demo unpaired data names it 'test'."""
    if not data.root and data.kind == "unaligned" and data.eval_split == "val":
        return "test"
    return data.eval_split


def build_split(cfg, root: str, split: str, train: bool) -> Dataset:
    d = cfg.data
    return build_dataset(d.kind, root, split, d.direction, d.load_size if train else d.crop_size,
                         d.crop_size, d.flip if train else False, d.serial, cfg.seed)


def split_size(data, ref, split: str) -> int:
    """Images of a training split as the datasets count them (aligned: the images of
    ``<split>/``; unaligned: the larger of ``<split>A`` and ``<split>B``), from a
    :class:`ganc.data.source.DataRef` without copying a URL dataset."""
    if data.kind == "aligned":
        n = ref.count_images(split)
    elif data.kind == "unaligned":
        n = max(ref.count_images(split + "A"), ref.count_images(split + "B"))
    else:
        raise ConfigError(f"data.kind {data.kind!r} is not one of: aligned, unaligned")
    if n < 1:
        raise DataError(f"data.root {ref.root!r}: no training images in split {split!r}")
    return n
