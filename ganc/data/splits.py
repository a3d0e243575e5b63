"""Which dataset split a run config names, as the datasets read it (no Ray, no training).

``eval_split`` (the evaluation split's folder name), ``build_split`` (the dataset object of
a split with the config's transforms), ``split_size`` (its image count, counted from a
:class:`ganc.data.source.DataRef` without copying a URL dataset), and the **search split**:

``data.search_split`` holds images of the training split out of the supernet's (and the
fine-tune's) training data, as GAN Compression's train1 / train2 metas do. The search
scores candidates on them, the fine-tune is kept or dropped by them and the export follows
that choice; ``data.eval_split`` (val / test) is then read only by the report. The held-out
files are a sample of the training folder's sorted relative names drawn with a generator
seeded by the run's seed, so every node (each with its own copy of a URL dataset) holds out
the same files. For unaligned data trainA and trainB are each split: the held-out A images
are the search inputs, the held-out B images its real set; with ``data.split_targets``
false only the source folder (trainA for AtoB) is split, and the real set of the split is
``data.fid_real`` (else the whole target training folder), the CycleGAN protocol of
scoring horse->zebra against all real zebras. The teacher trains on the whole training
split, as the reference's full models do.

``data.val_split`` holds out a **val split** of the training split the same way, for a
dataset without a val / test folder: drawn from what the search split leaves (so the two
are disjoint), with a generator seeded by (seed, folder) of its own; the report then
scores on it (``eval_split`` returns ``val``) and the supernet and fine-tune never see it.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random

import torch
from torch.utils.data import Dataset

from ..config import LABEL_MAP_KINDS, split_seed, train_crop
from ..errors import ConfigError, DataError
from .camvid import CamVidDataset
from .datasets import build_dataset, rel_name
from .images import list_images

SEARCH = "search"       # the search split's name in labels (best.json, model card, report)
VAL = "val"             # the name of a val split held out of training (data.val_split)
MIN_SEARCH = 2          # FID needs at least two images


def has_val_split(data) -> bool:
    return float(getattr(data, "val_split", 0) or 0) != 0


def eval_split(data) -> str:
    """The evaluation split: ``val`` when ``data.val_split`` holds one out of the training
    split, else the ``data.eval_split`` folder; demo unpaired data names it 'test'."""
    if has_val_split(data):
        return VAL
    if not data.root and data.kind == "unaligned" and data.eval_split == "val":
        return "test"
    return data.eval_split


def has_search_split(data) -> bool:
    return float(data.search_split) != 0


def choice_split(data) -> str:
    """The split whose FID picks the architecture and the exported weights: ``search``,
    or the eval split when ``data.search_split`` is 0."""
    return SEARCH if has_search_split(data) else eval_split(data)


def has_label_maps(data) -> bool:
    return data.kind in LABEL_MAP_KINDS


def image_hw(data) -> tuple[int, int]:
    """(height, width) of the images a run trains and scores at: ``crop_size`` square, or,
    for label-map data, ``crop_size`` wide and ``aspect_ratio`` x that high."""
    w = int(data.crop_size)
    if has_label_maps(data):
        return int(round(w * float(data.aspect_ratio))), w
    return w, w


def train_folders(data) -> list[str]:
    """Folders (relative to the root) of the training split (label-map data: the photos;
    their label maps share the names)."""
    if data.kind == "aligned" or has_label_maps(data):
        return [data.train_split]
    if data.kind == "unaligned":
        return [data.train_split + "A", data.train_split + "B"]
    raise ConfigError(f"data.kind {data.kind!r} is not one of: aligned, unaligned")


def split_folders(data) -> list[str]:
    """The training folders the search and val splits hold images out of: every training
    folder, or for unaligned data with ``data.split_targets`` false the source one only."""
    if has_label_maps(data) and has_val_split(data):
        raise ConfigError("data.val_split is not available for label-map data (data.kind "
                          f"{data.kind!r}) yet; set data.eval_split to a folder")
    folders = train_folders(data)
    if data.kind == "unaligned" and not getattr(data, "split_targets", True):
        return [data.train_split + ("A" if data.direction == "AtoB" else "B")]
    return folders


def _count(value, n: int, where: str, folder: str) -> int:
    """Images of a folder of ``n`` a split field (a fraction < 1 or a count) holds out."""
    v = float(value)
    if v == 0:
        return 0
    if v < 0 or not math.isfinite(v) or (v >= 1 and v != int(v)):
        raise ConfigError(f"{where}: expected a fraction in (0, 1) or a whole "
                          f"count of images, got {value!r}")
    k = max(MIN_SEARCH, int(round(v * n)) if v < 1 else int(v))
    if k >= n:
        raise ConfigError(f"{where} {value:g} holds out {k} of the {n} "
                          f"images of {folder!r}; at least one must be left to train on")
    return k


def search_count(data, n: int, folder: str = "") -> int:
    """How many of a training folder's ``n`` images ``data.search_split`` holds out (0 for
    a folder it does not split, see :func:`split_folders`)."""
    if folder and folder not in split_folders(data):
        return 0
    return _count(data.search_split, n, "data.search_split", folder or data.train_split)


def val_count(data, n: int, folder: str = "") -> int:
    """How many of a training folder's ``n`` images ``data.val_split`` holds out, after the
    search split's; together they leave at least one to train on."""
    if not has_val_split(data) or (folder and folder not in split_folders(data)):
        return 0
    folder = folder or data.train_split
    k_search = search_count(data, n, folder)
    k = _count(data.val_split, n, "data.val_split", folder)
    if k_search + k >= n:
        raise ConfigError(f"data.val_split {data.val_split:g} and data.search_split "
                          f"{data.search_split:g} hold out {k} + {k_search} of the {n} images "
                          f"of {folder!r}; at least one must be left to train on")
    return k


def held_out(data, names, seed: int, folder: str) -> list[str]:
    """The held-out subset of a folder's relative image names: sorted names, then a sample
    drawn by a generator seeded with (seed, folder), so it is the same on every node."""
    names = sorted(names)
    k = search_count(data, len(names), folder)
    if not k:
        return []
    return sorted(random.Random(f"ganc-search-split/{int(seed)}/{folder}").sample(names, k))


def val_held_out(data, names, seed: int, folder: str) -> list[str]:
    """The val split of a folder's relative image names: a sample of what the search
    split (:func:`held_out`) leaves, drawn by a generator of its own seeded with
    (seed, folder)."""
    names = sorted(names)
    k = val_count(data, len(names), folder)
    if not k:
        return []
    search = set(held_out(data, names, seed, folder))
    rest = [n for n in names if n not in search]
    return sorted(random.Random(f"ganc-val-split/{int(seed)}/{folder}").sample(rest, k))


def _names(cfg, root: str, pick) -> dict[str, list[str]]:
    out = {}
    for folder in train_folders(cfg.data):
        if folder not in split_folders(cfg.data):
            out[folder] = []
            continue
        paths = list_images(os.path.join(root, folder), f"training folder {folder}")
        out[folder] = pick(cfg.data, [rel_name(p, root) for p in paths], split_seed(cfg),
                           folder)
    return out


def search_names(cfg, root: str) -> dict[str, list[str]]:
    """``{training folder: held-out names relative to the dataset root}`` (empty lists
    when ``data.search_split`` is 0, and for a folder it does not split)."""
    return _names(cfg, root, held_out)


def val_names(cfg, root: str) -> dict[str, list[str]]:
    """``{training folder: names of the val split}`` (empty when ``data.val_split`` is 0)."""
    return _names(cfg, root, val_held_out)


def _all_but(root: str, kept: dict[str, list[str]]) -> frozenset:
    """Every image of the folders with kept names, less those names (what to exclude so
    that a dataset reads only the kept images; folders without kept names stay whole)."""
    out = set()
    for folder, names in kept.items():
        if names:
            keep = set(names)
            paths = list_images(os.path.join(root, folder), f"training folder {folder}")
            out.update(n for n in (rel_name(p, root) for p in paths) if n not in keep)
    return frozenset(out)


def build_split(cfg, root: str, split: str, train: bool, holdout: bool = False,
                crop: int = 0) -> Dataset:
    """The dataset of ``split``; with ``holdout`` the training split leaves out the search
    split (the supernet's and the fine-tune's data; the teacher's is the whole split).
    ``train``: random crops ``crop`` wide (0: :func:`ganc.config.train_crop`, the side
    every training stage samples) of the images resized to ``data.load_size``, flipped as
    ``data.flip`` says; else the images resized to ``data.crop_size``, the eval size."""
    d = cfg.data
    exclude = frozenset()
    if holdout and split == d.train_split and has_search_split(d):
        exclude = frozenset(n for names in search_names(cfg, root).values() for n in names)
    if holdout and split == d.train_split and has_val_split(d):
        exclude |= frozenset(n for names in val_names(cfg, root).values() for n in names)
    if has_val_split(d) and split == VAL:    # the val split: its training images only
        split, exclude = d.train_split, _all_but(root, val_names(cfg, root))
    side = int(crop or train_crop(d)) if train else int(d.crop_size)
    if has_label_maps(d):     # whole images at the side (prune.crop_size: a smaller one)
        at = d if side == int(d.crop_size) else dataclasses.replace(d, crop_size=side)
        return CamVidDataset(root, split, size=image_hw(at), flip=bool(d.flip and train),
                             exclude=exclude)
    return build_dataset(d.kind, root, split, d.direction, d.load_size if train else side,
                         side, d.flip if train else False, d.serial, cfg.seed,
                         exclude=exclude, unpaired=bool(getattr(d, "unpaired", False)))


def train_crop_line(data, stage: str) -> str:
    """The progress line of a training stage whose crops are not the eval size
    (``[supernet] training on 128x128 crops of the 286 px images; evaluation at 256``),
    else ''."""
    crop = train_crop(data)
    if crop == int(data.crop_size):
        return ""
    return (f"[{stage}] training on {crop}x{crop} crops of the {int(data.load_size)} px "
            f"images; evaluation at {int(data.crop_size)}")


def split_size(data, ref, split: str, holdout: bool = False) -> int:
    """Images of a training split as the datasets count them (aligned: the images of
    ``<split>/``; unaligned: the larger of ``<split>A`` and ``<split>B``), less the search
    split with ``holdout``, from a :class:`ganc.data.source.DataRef` without copying a
    URL dataset."""
    drop = holdout and split == data.train_split

    def count(sub: str) -> int:
        n = ref.count_images(sub)
        return n - search_count(data, n, sub) - val_count(data, n, sub) if drop and n else n
    if data.kind == "aligned" or has_label_maps(data):
        n = count(split)
    elif data.kind == "unaligned":
        n = max(count(split + "A"), count(split + "B"))
    else:
        raise ConfigError(f"data.kind {data.kind!r} is not one of: aligned, unaligned")
    if n < 1:
        raise DataError(f"data.root {ref.root!r}: no training images in split {split!r}")
    return n


def calibration_labels(cfg, root: str):
    """``search.calibration_images`` label maps of the supernet's training data (the
    training split less the search split), uint8 (n, 1, h, w) class indices at
    :func:`image_hw`, drawn without replacement with the run's seed: the input of the
    batch-norm recalibration before a SPADE sub-network is scored."""
    ds = build_split(cfg, root, cfg.data.train_split, train=False, holdout=True)
    order = list(range(len(ds)))
    random.Random(f"ganc-calibration/{int(cfg.seed)}").shuffle(order)
    chosen = sorted(order[:int(cfg.search.calibration_images)])
    return torch.stack([ds.labels(i) for i in chosen])[:, None].to(torch.uint8).numpy()
