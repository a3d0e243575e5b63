"""CamVid street scenes as a label map -> photo task (semantic image synthesis, SPADE).

Layout (the SegNet release of CamVid): ``<root>/<split>/*.png`` RGB photos (480x360) and
``<root>/<split>annot/*.png`` label maps with the same file names, mode L, classes 0-10 and
11 = void. The generator's input is the one-hot label map with ``LABEL_NC`` = 12 channels
(the 11 classes and void; no instance map); its target is the photo in [-1, 1].

:func:`make_camvid_like` writes procedurally generated street scenes in the same layout and
format, for fast tests.
"""
from __future__ import annotations

import os
import random
from typing import Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .datasets import rel_name
from .images import list_images, load_rgb, stem, to_tensor
from .staging import check_empty_target, staged_folder

CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
           "pedestrian", "bicyclist")
N_CLASSES = len(CLASSES)          # 11 scored classes
VOID = N_CLASSES                  # label 11: unlabelled
LABEL_NC = N_CLASSES + 1          # one-hot channels of the generator input
NATIVE_SIZE = (360, 480)          # (height, width) of the CamVid photos and label maps
LABEL_MODES = ("L", "P", "I", "I;16")


def annot_folder(root, split: str) -> str:
    return os.path.join(os.fspath(root), split + "annot")


def load_label_map(path, name: str = "") -> np.ndarray:
    """A label map as (H, W) int64 with values in 0..VOID; one-line errors otherwise
    (``path`` may be a file object, then ``name`` names it)."""
    name = name or path
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read label map {name}: {str(e).splitlines()[0][:160]}") from None
    if mode not in LABEL_MODES or arr.ndim != 2:
        raise DataError(f"label map {name} has mode {mode}; expected a single-channel image "
                        f"(mode L) of class indices 0-{VOID}")
    arr = arr.astype(np.int64)
    top = int(arr.max()) if arr.size else 0
    if top > VOID or (arr.size and int(arr.min()) < 0):
        raise DataError(f"label map {name} holds class {top}; CamVid classes are 0-{VOID - 1} "
                        f"and {VOID} (void)")
    return arr


def pair_by_name(images_dir, labels_dir, images_what="--images", labels_what="--labels"
                 ) -> list[tuple[str, str]]:
    """(image, label map) paths matched by file name without extension, sorted.

    Every image needs a label map and every label map an image; duplicates of a name in one
    folder are refused. Errors name the folder and the first unmatched file.
    """
    images = list_images(images_dir, f"{images_what} folder")
    labels = list_images(labels_dir, f"{labels_what} folder")
    by_name = {}
    for what, folder, paths in ((images_what, images_dir, images),
                                (labels_what, labels_dir, labels)):
        seen: dict[str, str] = {}
        for p in paths:
            s = stem(p)
            if s in seen:
                raise DataError(f"{what} folder {folder} holds two files named {s}: "
                                f"{os.path.basename(seen[s])} and {os.path.basename(p)}")
            seen[s] = p
        by_name[what] = seen
    imgs, labs = by_name[images_what], by_name[labels_what]
    no_label = sorted(set(imgs) - set(labs))
    if no_label:
        raise DataError(f"{len(no_label)} image(s) in {images_dir} have no label map of the "
                        f"same name in {labels_dir} (first: {os.path.basename(imgs[no_label[0]])})")
    no_image = sorted(set(labs) - set(imgs))
    if no_image:
        raise DataError(f"{len(no_image)} label map(s) in {labels_dir} have no image of the "
                        f"same name in {images_dir} (first: {os.path.basename(labs[no_image[0]])})")
    return [(imgs[s], labs[s]) for s in sorted(imgs)]


def one_hot(labels, n: int = LABEL_NC):
    """Integer label maps (..., H, W) -> float one-hot (..., n, H, W)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    out = torch.nn.functional.one_hot(labels, n).movedim(-1, -3)
    return out.float()


def _check_size(size) -> Optional[tuple[int, int]]:
    if size is None:
        return None
    try:
        h, w = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size {size!r} must be (height, width)") from None
    if h < 8 or w < 8:
        raise ConfigError(f"size {size!r} must be at least 8x8")
    return h, w


class CamVidDataset(Dataset):
    """Label map -> photo pairs of one split, resized to ``size`` (height, width).

    Items: ``A`` one-hot label map (LABEL_NC, h, w) float; ``B`` photo (3, h, w) in [-1, 1]
    (bicubic resize); ``label`` class indices (h, w) int64 (nearest resize); ``path`` and
    ``label_path``; ``exclude``: photos (relative to ``root``) left out; with ``native_gt`` also ``gt``, the label map at its own size (the mIoU
    ground truth). ``flip``: random horizontal flips of photo and labels together.
    """

    def __init__(self, root, split: str = "train", size=None, flip: bool = False,
                 native_gt: bool = False, exclude=frozenset()):
        self.root = os.fspath(root)
        self.split = split
        self.pairs = pair_by_name(os.path.join(self.root, split), annot_folder(self.root, split),
                                  f"CamVid split {split!r}", f"CamVid split {split!r} labels")
        if exclude:                   # photos named relative to root (a held-out search split)
            self.pairs = [p for p in self.pairs if rel_name(p[0], self.root) not in exclude]
            if not self.pairs:
                raise DataError(f"CamVid split {split!r}: every image is held out "
                                "(data.search_split too large)")
        self.size = _check_size(size)
        self.flip = flip
        self.native_gt = native_gt

    def __len__(self):
        return len(self.pairs)

    def labels(self, i: int):
        """Class indices (h, w) at the dataset's size, without loading the photo."""
        lab = load_label_map(self.pairs[i][1])
        if self.size and lab.shape != self.size:
            lab = np.asarray(Image.fromarray(lab.astype(np.uint8)).resize(
                (self.size[1], self.size[0]), Image.NEAREST)).astype(np.int64)
        return torch.from_numpy(lab)

    def __getitem__(self, i):
        photo_path, label_path = self.pairs[i]
        photo = load_rgb(photo_path)
        native = load_label_map(label_path)
        if native.shape != (photo.size[1], photo.size[0]):
            raise DataError(f"label map {label_path} is {native.shape[1]}x{native.shape[0]}, "
                            f"its photo {photo_path} {photo.size[0]}x{photo.size[1]}")
        lab = Image.fromarray(native.astype(np.uint8))
        if self.size:
            h, w = self.size
            photo = photo.resize((w, h), Image.BICUBIC)
            lab = lab.resize((w, h), Image.NEAREST)
        if self.flip and random.random() < 0.5:
            photo = photo.transpose(Image.FLIP_LEFT_RIGHT)
            lab = lab.transpose(Image.FLIP_LEFT_RIGHT)
        labels = torch.from_numpy(np.asarray(lab).astype(np.int64))
        item = {"A": one_hot(labels), "B": to_tensor(photo), "label": labels,
                "path": photo_path, "label_path": label_path}
        if self.native_gt:
            item["gt"] = torch.from_numpy(native)
        return item


# ---------------------------------------------------------------- generated street scenes
# Photo colours per class (sky, building, pole, road, pavement, tree, sign, fence, car,
# pedestrian, bicyclist, void), as RGB in [0, 1].
_COLOURS = np.array([
    [0.55, 0.70, 0.90], [0.55, 0.45, 0.40], [0.35, 0.35, 0.35], [0.40, 0.40, 0.42],
    [0.65, 0.62, 0.58], [0.25, 0.50, 0.20], [0.85, 0.75, 0.15], [0.50, 0.35, 0.25],
    [0.70, 0.15, 0.15], [0.80, 0.55, 0.40], [0.20, 0.30, 0.70], [0.05, 0.05, 0.05]],
    dtype=np.float32)


def street_scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A (h, w) int64 label map of a street: sky, buildings, road, pavement, trees, poles,
    signs, fences, cars, pedestrians, bicyclists and void specks."""
    lab = np.zeros((h, w), np.int64)                                  # sky
    yy, xx = np.mgrid[0:h, 0:w]
    horizon = int(h * rng.uniform(0.35, 0.5))
    x = 0
    while x < w:                                                      # buildings
        bw = int(w * rng.uniform(0.1, 0.3))
        top = int(horizon * rng.uniform(0.05, 0.7))
        lab[top:horizon + 1, x:x + bw] = 1
        x += bw
    lab[horizon:, :] = 4                                              # pavement
    road_top = horizon + int((h - horizon) * rng.uniform(0.15, 0.35))
    half = (yy - horizon) / max(1, h - horizon) * w * 0.7 + w * 0.05
    centre = w * rng.uniform(0.4, 0.6)
    lab[(yy >= road_top) & (np.abs(xx - centre) <= half)] = 3         # road
    if rng.random() < 0.6:                                            # fence
        fy = horizon - int(h * 0.06)
        lab[fy:horizon, : int(w * rng.uniform(0.2, 0.5))] = 7
    for _ in range(rng.integers(1, 4)):                               # trees
        cx, cy = rng.uniform(0, w), horizon - rng.uniform(0.05, 0.25) * h
        r = rng.uniform(0.05, 0.12) * w
        lab[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 5
    for _ in range(rng.integers(1, 3)):                               # poles with signs
        px = int(rng.uniform(0.05, 0.95) * w)
        ptop = int(horizon * rng.uniform(0.2, 0.6))
        lab[ptop:horizon + int(h * 0.1), px:px + max(1, w // 80)] = 2
        s = max(2, w // 40)
        lab[ptop:ptop + s, max(0, px - s // 2):px + s] = 6
    for _ in range(rng.integers(1, 4)):                               # cars on the road
        cy = int(rng.uniform(road_top, h * 0.95))
        cw = int(w * rng.uniform(0.1, 0.2) * (0.5 + (cy - horizon) / max(1, h - horizon)))
        cx = int(centre + rng.uniform(-0.5, 0.5) * half[min(cy, h - 1), 0])
        lab[max(0, cy - cw // 2):cy, max(0, cx - cw // 2):cx + cw // 2] = 8
    for cls in (9, 10):                                               # people
        for _ in range(rng.integers(0, 3)):
            py = int(rng.uniform(horizon + 2, h - 2))
            ph = max(3, int(h * 0.12 * (0.5 + (py - horizon) / max(1, h - horizon))))
            px = int(rng.uniform(0, w - 4))
            lab[max(0, py - ph):py, px:px + max(2, ph // (3 if cls == 9 else 2))] = cls
    for _ in range(rng.integers(0, 4)):                               # void specks
        vx, vy = int(rng.uniform(0, w - 3)), int(rng.uniform(0, h - 3))
        lab[vy:vy + 3, vx:vx + 3] = VOID
    return lab


def render_street(lab: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A (h, w, 3) uint8 'photo' of a label map: class colours, per-class texture, light."""
    h, w = lab.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = _COLOURS[lab].copy()
    tex = 0.85 + 0.15 * np.sin((xx * (1 + lab % 4) + yy * (1 + lab % 3)) * 0.35)
    out *= tex[..., None]
    out *= (1.05 - 0.25 * yy / h)[..., None]                          # light from above
    out += rng.normal(0, 0.02, out.shape).astype(np.float32)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def make_camvid_like(out, n_train: int = 8, n_val: int = 4, size=(96, 128),
                     seed: int = 0) -> dict:
    """Write generated street scenes as ``train``/``trainannot``/``val``/``valannot`` into
    ``out`` (which must not hold files), atomically."""
    h, w = _check_size(size)
    if n_train < 1 or n_val < 1:
        raise ConfigError(f"need at least one image per split, got {n_train} and {n_val}")
    out = check_empty_target(out)
    info = {"kind": "camvid-like", "n_train": n_train, "n_val": n_val, "size": [h, w],
            "seed": seed}
    with staged_folder(out, "camvid_like.json", info, ".ganc-camvid-") as tmp:
        for split, count, offset in (("train", n_train, 0), ("val", n_val, 100_000)):
            os.makedirs(os.path.join(tmp, split))
            os.makedirs(annot_folder(tmp, split))
            for i in range(count):
                rng = np.random.default_rng(seed * 1_000_003 + offset + i)
                lab = street_scene(rng, h, w)
                name = f"{split}_{i:05d}.png"
                Image.fromarray(render_street(lab, rng)).save(os.path.join(tmp, split, name))
                Image.fromarray(lab.astype(np.uint8), mode="L").save(
                    os.path.join(annot_folder(tmp, split), name))
    return info


# Colours of the label maps in reports (CamVid's customary palette; void black), RGB.
PALETTE = np.array([
    [128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222],
    [128, 128, 0], [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0],
    [0, 128, 192], [0, 0, 0]], dtype=np.uint8)


def colour_labels(labels) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 RGB with :data:`PALETTE`."""
    return PALETTE[np.asarray(labels, dtype=np.int64).clip(0, VOID)]


def calibration_batches(dataset: CamVidDataset, n: int = 256, batch_size: int = 16,
                        seed: int = 0) -> list:
    """``n`` one-hot label maps of ``dataset`` (drawn without replacement, deterministic for
    ``seed``; all of them when it has fewer) in batches: the input of batch-norm
    recalibration (:func:`ganc.nn.calibrate.recalibrate_bn`)."""
    if n < 1 or batch_size < 1:
        raise ConfigError(f"calibration needs n >= 1 and batch_size >= 1, got {n}, {batch_size}")
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    chosen = sorted(order[:n])
    return [torch.stack([one_hot(dataset.labels(i)) for i in chosen[k:k + batch_size]])
            for k in range(0, len(chosen), batch_size)]


__all__ = ["CLASSES", "N_CLASSES", "VOID", "LABEL_NC", "NATIVE_SIZE", "CamVidDataset",
           "load_label_map", "pair_by_name", "one_hot", "make_camvid_like", "street_scene",
           "calibration_batches", "colour_labels", "PALETTE"]
