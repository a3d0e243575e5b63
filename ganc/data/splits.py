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
are the search inputs, the held-out B images its real set. The teacher trains on the whole
training split, as the reference's full models do.
"""
from __future__ import annotations

import math
import os
import random

from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .datasets import build_dataset, rel_name
from .images import list_images

SEARCH = "search"       # the search split's name in labels (best.json, model card, report)
MIN_SEARCH = 2          # FID needs at least two images


def eval_split(data) -> str:
    """The evaluation split; demo unpaired data names it 'test'."""
    if not data.root and data.kind == "unaligned" and data.eval_split == "val":
        return "test"
    return data.eval_split


def has_search_split(data) -> bool:
    return float(data.search_split) != 0


def choice_split(data) -> str:
    """The split whose FID picks the architecture and the exported weights: ``search``,
    or the eval split when ``data.search_split`` is 0."""
    return SEARCH if has_search_split(data) else eval_split(data)


LABEL_MAP_KINDS = ("camvid",)     # label map -> photo data (SPADE; the mIoU needs its maps)


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


def search_count(data, n: int, folder: str = "") -> int:
    """How many of a training folder's ``n`` images ``data.search_split`` holds out."""
    v = float(data.search_split)
    if v == 0:
        return 0
    if v < 0 or not math.isfinite(v) or (v >= 1 and v != int(v)):
        raise ConfigError(f"data.search_split: expected a fraction in (0, 1) or a whole "
                          f"count of images, got {data.search_split!r}")
    k = max(MIN_SEARCH, int(round(v * n)) if v < 1 else int(v))
    if k >= n:
        raise ConfigError(f"data.search_split {data.search_split:g} holds out {k} of the {n} "
                          f"images of {folder or data.train_split!r}; at least one must be "
                          "left to train on")
    return k


def held_out(data, names, seed: int, folder: str) -> list[str]:
    """The held-out subset of a folder's relative image names: sorted names, then a sample
    drawn by a generator seeded with (seed, folder), so it is the same on every node."""
    names = sorted(names)
    k = search_count(data, len(names), folder)
    if not k:
        return []
    return sorted(random.Random(f"ganc-search-split/{int(seed)}/{folder}").sample(names, k))


def search_names(cfg, root: str) -> dict[str, list[str]]:
    """``{training folder: held-out names relative to the dataset root}`` (empty lists
    when ``data.search_split`` is 0)."""
    out = {}
    for folder in train_folders(cfg.data):
        paths = list_images(os.path.join(root, folder), f"training folder {folder}")
        out[folder] = held_out(cfg.data, [rel_name(p, root) for p in paths], cfg.seed, folder)
    return out


def build_split(cfg, root: str, split: str, train: bool, holdout: bool = False) -> Dataset:
    """The dataset of ``split``; with ``holdout`` the training split leaves out the search
    split (the supernet's and the fine-tune's data; the teacher's is the whole split)."""
    d = cfg.data
    exclude = frozenset()
    if holdout and split == d.train_split and has_search_split(d):
        exclude = frozenset(n for names in search_names(cfg, root).values() for n in names)
    if has_label_maps(d):
        from .camvid import CamVidDataset
        return CamVidDataset(root, split, size=image_hw(d), flip=bool(d.flip and train),
                             exclude=exclude)
    return build_dataset(d.kind, root, split, d.direction, d.load_size if train else d.crop_size,
                         d.crop_size, d.flip if train else False, d.serial, cfg.seed,
                         exclude=exclude)


def split_size(data, ref, split: str, holdout: bool = False) -> int:
    """Images of a training split as the datasets count them (aligned: the images of
    ``<split>/``; unaligned: the larger of ``<split>A`` and ``<split>B``), less the search
    split with ``holdout``, from a :class:`ganc.data.source.DataRef` without copying a
    URL dataset."""
    drop = holdout and split == data.train_split

    def count(sub: str) -> int:
        n = ref.count_images(sub)
        return n - search_count(data, n, sub) if drop and n else n
    if data.kind == "aligned" or has_label_maps(data):
        n = count(split)
    elif data.kind == "unaligned":
        n = max(count(split + "A"), count(split + "B"))
    else:
        raise ConfigError(f"data.kind {data.kind!r} is not one of: aligned, unaligned")
    if n < 1:
        raise DataError(f"data.root {ref.root!r}: no training images in split {split!r}")
    return n


def scoring_split(cfg, root: str, name: str = "", report: bool = False):
    """The :class:`ganc.metrics.pool.EvalSplit` FID is scored on: the search split (inputs
    and real targets of the held-out training images), or, with ``report`` or without a
    search split, the eval split. ``root``: the dataset's local folder on this node."""
    import copy

    from ..metrics.pool import EvalSplit
    from ..metrics.sources import FolderSource
    d = copy.deepcopy(cfg.data)
    d.root = root
    if has_label_maps(d):
        return label_map_split(cfg, root, name, report)
    if report or not has_search_split(d):
        d.eval_split = eval_split(cfg.data)
        return EvalSplit.from_data_config(d, name=name)
    held = search_names(cfg, root)
    name = name or os.path.basename(os.path.normpath(root))
    a_to_b = d.direction == "AtoB"

    def source(folder: str, crop: str, size: int) -> FolderSource:
        only = tuple(n[len(folder) + 1:] for n in held[folder])
        return FolderSource((os.path.join(root, folder),), crop, size, only=only)
    if d.kind == "aligned":
        inp = source(d.train_split, "left" if a_to_b else "right", d.crop_size)
        real = source(d.train_split, "right" if a_to_b else "left", 0)
    else:
        src, dst = ("A", "B") if a_to_b else ("B", "A")
        inp = source(d.train_split + src, "full", d.crop_size)
        real = source(d.train_split + dst, "full", 0)
    label = f"{name}/{d.train_split}-{SEARCH}-seed{int(cfg.seed)}/{d.direction}"
    return EvalSplit(inp, real, label)


def label_map_split(cfg, root: str, name: str = "", report: bool = False):
    """The scoring split of label-map data (CamVid layout): inputs are the label maps at
    :func:`image_hw` (uint8 class indices, one-hot in the scorer), the real set the photos,
    ``gt`` the label maps at their own size (the mIoU's ground truth); the search split held
    out of ``train_split``, or, with ``report`` or without one, the eval split."""
    import numpy as np
    import torch

    from ..metrics.pool import EvalSplit
    from ..metrics.sources import FolderSource
    from .camvid import LABEL_NC, CamVidDataset, load_label_map
    d = cfg.data
    search = has_search_split(d) and not report
    split = d.train_split if search else eval_split(d)
    ds = CamVidDataset(root, split, size=image_hw(d))
    if search:
        keep = set(search_names(cfg, root)[d.train_split])
        ds.pairs = [p for p in ds.pairs if rel_name(p[0], root) in keep]
    if not ds.pairs:
        raise DataError(f"{root}: no images in the scoring split {split!r}")
    inputs = torch.stack([ds.labels(i) for i in range(len(ds))])[:, None].to(torch.uint8)
    gt = [load_label_map(lab).astype(np.uint8) for _, lab in ds.pairs]
    real = FolderSource((os.path.join(root, split),), "full", 0,
                        only=tuple(os.path.basename(p) for p, _ in ds.pairs))
    name = name or os.path.basename(os.path.normpath(root))
    label = f"{name}/{split}-{SEARCH}-seed{int(cfg.seed)}/photos" if search else \
        f"{name}/{split}/photos"
    return EvalSplit(inputs, real, label, input_classes=LABEL_NC, gt=gt,
                     calib=calibration_labels(cfg, root) if cfg.search.calibration_images
                     else None)


def calibration_labels(cfg, root: str):
    """``search.calibration_images`` label maps of the supernet's training data (the
    training split less the search split), uint8 (n, 1, h, w) class indices at
    :func:`image_hw`, drawn without replacement with the run's seed: the input of the
    batch-norm recalibration before a SPADE sub-network is scored."""
    import torch
    ds = build_split(cfg, root, cfg.data.train_split, train=False, holdout=True)
    order = list(range(len(ds)))
    random.Random(f"ganc-calibration/{int(cfg.seed)}").shuffle(order)
    chosen = sorted(order[:int(cfg.search.calibration_images)])
    return torch.stack([ds.labels(i) for i in chosen])[:, None].to(torch.uint8).numpy()
