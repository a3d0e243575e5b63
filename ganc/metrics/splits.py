"""The splits the scorers score on, built from a run config's data section: FID and mIoU
of the search, the fine-tune, the report and ``ganc fid`` read an :class:`EvalSplit` made
here. Which images a split holds is :mod:`ganc.data.splits`' business; this module, above
it, turns them into the metrics' sources (it was part of it: data sits below metrics)."""
from __future__ import annotations

import copy
import os

import numpy as np
import torch

from ..config import split_seed
from ..data.camvid import LABEL_NC, CamVidDataset, load_label_map
from ..data.datasets import rel_name
from ..data.splits import (SEARCH, VAL, calibration_labels, eval_split, has_label_maps,
                           has_search_split, has_val_split, image_hw, search_names,
                           val_names)
from ..errors import DataError
from .sources import FolderSource
from .specs import EvalSplit


def scoring_split(cfg, root: str, name: str = "", report: bool = False):
    """The :class:`ganc.metrics.pool.EvalSplit` FID is scored on: the search split (inputs
    and real targets of the held-out training images), or, with ``report`` or without a
    search split, the eval split. ``root``: the dataset's local folder on this node."""
    d = copy.deepcopy(cfg.data)
    d.root = root
    if has_label_maps(d):
        return label_map_split(cfg, root, name, report)
    if not report and has_search_split(d):
        which, held = SEARCH, search_names(cfg, root)
    elif has_val_split(d):
        which, held = VAL, val_names(cfg, root)
    else:
        d.eval_split = eval_split(cfg.data)
        return EvalSplit.from_data_config(d, name=name)
    name = name or os.path.basename(os.path.normpath(root))
    a_to_b = d.direction == "AtoB"

    def source(folder: str, crop: str, size: int) -> FolderSource:
        only = tuple(n[len(folder) + 1:] for n in held[folder])
        return FolderSource((os.path.join(root, folder),), crop, size, only=only)
    if d.kind == "aligned":
        inp = source(d.train_split, "left" if a_to_b else "right", d.crop_size)
        real = source(d.train_split, "right" if a_to_b else "left", 0)
        targets = "B"
    else:
        src, dst = ("A", "B") if a_to_b else ("B", "A")
        inp = source(d.train_split + src, "full", d.crop_size)
        if held[d.train_split + dst]:      # the held-out targets (data.split_targets)
            real, targets = source(d.train_split + dst, "full", 0), dst
        else:                              # every real target: data.fid_real, or the folder
            folders = (tuple(os.path.join(root, f.strip()) for f in d.fid_real.split(",")
                             if f.strip()) if d.fid_real else
                       (os.path.join(root, d.train_split + dst),))
            real = FolderSource(folders, "full", 0)
            targets = "all-" + "+".join(os.path.basename(os.path.normpath(f))
                                        for f in folders)
    label = f"{name}/{d.train_split}-{which}-seed{split_seed(cfg)}/{d.direction}"
    if targets not in ("A", "B"):
        label += f"/{targets}"
    return EvalSplit(inp, real, label)


def label_map_split(cfg, root: str, name: str = "", report: bool = False):
    """The scoring split of label-map data (CamVid layout): inputs are the label maps at
    :func:`image_hw` (uint8 class indices, one-hot in the scorer), the real set the photos,
    ``gt`` the label maps at their own size (the mIoU's ground truth); the search split held
    out of ``train_split``, or, with ``report`` or without one, the eval split."""
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
    label = f"{name}/{split}-{SEARCH}-seed{split_seed(cfg)}/photos" if search else \
        f"{name}/{split}/photos"
    return EvalSplit(inputs, real, label, input_classes=LABEL_NC, gt=gt,
                     calib=calibration_labels(cfg, root) if cfg.search.calibration_images
                     else None)


__all__ = ["scoring_split", "label_map_split"]
