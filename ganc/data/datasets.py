"""Aligned (pix2pix), unaligned (CycleGAN) and single-folder datasets.

Transforms follow pytorch-CycleGAN-and-pix2pix: in training, resize to ``load_size``,
random crop to ``crop_size`` and random horizontal flip (the same for A and B of a
pair); at test time only a resize to ``crop_size``. Outputs are tensors in [-1, 1].
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..config import DIRECTIONS
from ..errors import ConfigError, DataError
from .images import list_images, load_rgb, to_tensor


@dataclass
class Transform:
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    train: bool = True

    def params(self, rng=random) -> dict:
        if not self.train:
            return {}
        off = self.load_size - self.crop_size
        return {"x": rng.randint(0, max(0, off)), "y": rng.randint(0, max(0, off)),
                "flip": self.flip and rng.random() < 0.5}

    def __call__(self, im: Image.Image, p: dict):
        if not self.train:
            return to_tensor(im.resize((self.crop_size, self.crop_size), Image.BICUBIC))
        size = max(self.load_size, self.crop_size)
        im = im.resize((size, size), Image.BICUBIC)
        im = im.crop((p["x"], p["y"], p["x"] + self.crop_size, p["y"] + self.crop_size))
        if p["flip"]:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        return to_tensor(im)


def rel_name(path: str, root) -> str:
    """A file's name relative to the dataset root, with '/' separators (what a split
    names images by: identical on every node, wherever the dataset is copied)."""
    return os.path.relpath(path, os.fspath(root)).replace(os.sep, "/")


def _without(paths: list[str], root, exclude, what: str) -> list[str]:
    """``paths`` less the files named in ``exclude`` (relative to ``root``)."""
    if not exclude:
        return paths
    kept = [p for p in paths if rel_name(p, root) not in exclude]
    if not kept:
        raise DataError(f"{what}: every image is held out (data.search_split too large)")
    return kept


def _check_direction(direction):
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction {direction!r} is not one of: {', '.join(DIRECTIONS)}")


LAYOUT_PROBE = 8        # unpaired AB files: images whose layout is checked
GREY_RATIO = 0.5        # the sketch half's colourfulness must be under this x the photo's


def _colourfulness(im: Image.Image) -> float:
    """Mean |R - G| + |G - B| of an RGB image (0 for a grey sketch)."""
    a = np.asarray(im.convert("RGB"), dtype=np.int16)
    return float(np.abs(a[..., 0] - a[..., 1]).mean() + np.abs(a[..., 1] - a[..., 2]).mean())


def check_sketch_layout(paths, direction: str, where: str) -> None:
    """Unpaired sketch / photo AB files: each twice as wide as high, and the input half
    (B for BtoA) the grey sketch; a wrong layout is one line naming the file or folder."""
    probe = paths[:LAYOUT_PROBE]
    grey = colour = 0.0
    for path in probe:
        ab = load_rgb(path)
        w, h = ab.size
        if w != 2 * h:
            raise DataError(f"{where}: {path} is {w}x{h}; unpaired sketch/photo data needs "
                            "AB files twice as wide as high (two square halves side by side)")
        a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))
        inp, out = (a, b) if direction == "AtoB" else (b, a)
        grey += _colourfulness(inp.resize((32, 32)))
        colour += _colourfulness(out.resize((32, 32)))
    if probe and not grey < GREY_RATIO * colour:
        side = "left" if direction == "AtoB" else "right"
        raise DataError(f"{where}: the input half ({side}, data.direction {direction}) is "
                        f"not the grey sketch in its first {len(probe)} files (colourfulness "
                        f"{grey / len(probe):.1f} vs {colour / len(probe):.1f} of the other "
                        "half): the photo must be the other half (shoes-sketch: photo LEFT, "
                        "sketch RIGHT, data.direction BtoA)")


class AlignedDataset(Dataset):
    """Folder of images holding A and B side by side (``<root>/<split>/*.jpg``); the files
    named in ``exclude`` (relative to ``root``, e.g. ``train/12.jpg``) are left out.
    ``unpaired``: in training an image's A goes with the B of a random file (two unpaired
    pools, MUNIT's reading of sketch / photo files; their layout is checked)."""

    def __init__(self, root, split="train", direction="AtoB", transform: Transform = None,
                 seed: int = 0, exclude=frozenset(), unpaired: bool = False):
        _check_direction(direction)
        self.folder = os.path.join(os.fspath(root), split)
        what = f"aligned dataset split {split!r}"
        self.paths = _without(list_images(self.folder, what), root, exclude, what)
        self.direction = direction
        self.transform = transform or Transform(train=split == "train")
        self.seed = seed
        self.unpaired = bool(unpaired)
        if self.unpaired:
            check_sketch_layout(self.paths, direction, f"data.root {self.folder}")

    def __len__(self):
        return len(self.paths)

    def load_pair(self, i):
        path = self.paths[i]
        ab = load_rgb(path)
        w, h = ab.size
        if w % 2:
            raise DataError(f"aligned image {path} has odd width {w}; A and B must be side by "
                            "side at equal widths")
        a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))
        return (a, b) if self.direction == "AtoB" else (b, a)

    def __getitem__(self, i):
        a, b = self.load_pair(i)
        p = self.transform.params(random)
        if self.unpaired and self.transform.train:     # seeded per worker by the DataLoader
            j = random.randrange(len(self.paths))
            b = self.load_pair(j)[1]
            q = self.transform.params(random)
            return {"A": self.transform(a, p), "B": self.transform(b, q),
                    "path": self.paths[i], "path_B": self.paths[j]}
        return {"A": self.transform(a, p), "B": self.transform(b, p), "path": self.paths[i]}


class UnalignedDataset(Dataset):
    """``<root>/<split>A`` and ``<root>/<split>B`` (trainA/trainB/testA/testB).

    With ``serial`` the i-th A is paired with the (i mod |B|)-th B, else with a random B.
    ``exclude``: files (relative to ``root``) left out, as for the aligned dataset.
    """

    def __init__(self, root, split="train", direction="AtoB", transform: Transform = None,
                 serial: bool = False, seed: int = 0, exclude=frozenset()):
        _check_direction(direction)
        root = os.fspath(root)
        pa, pb = (_without(list_images(os.path.join(root, split + s), what), root, exclude, what)
                  for s, what in (("A", f"unaligned dataset folder {split}A"),
                                  ("B", f"unaligned dataset folder {split}B")))
        self.paths_A, self.paths_B = (pa, pb) if direction == "AtoB" else (pb, pa)
        self.transform = transform or Transform(train=split == "train")
        self.serial, self.seed = serial, seed

    def __len__(self):
        return max(len(self.paths_A), len(self.paths_B))

    def __getitem__(self, i):
        rng = random  # seeded per worker by the DataLoader
        pa = self.paths_A[i % len(self.paths_A)]
        j = i % len(self.paths_B) if self.serial else rng.randrange(len(self.paths_B))
        pb = self.paths_B[j]
        return {"A": self.transform(load_rgb(pa), self.transform.params(rng)),
                "B": self.transform(load_rgb(pb), self.transform.params(rng)),
                "path": pa, "path_B": pb}


class SingleFolderDataset(Dataset):
    """Every image of one folder, for translation and FID."""

    def __init__(self, folder, transform: Transform = None):
        self.paths = list_images(folder, "image folder")
        self.transform = transform or Transform(train=False)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return {"A": self.transform(load_rgb(self.paths[i]), {}), "path": self.paths[i]}


def build_dataset(kind: str, root, split="train", direction="AtoB", load_size=286,
                  crop_size=256, flip=True, serial=False, seed=0,
                  train_aug: bool | None = None, exclude=frozenset(),
                  unpaired: bool = False) -> Dataset:
    """A dataset by kind; training augmentation defaults to on for the 'train' split;
    ``exclude``: files relative to ``root`` left out (a held-out search split)."""
    train = (split == "train") if train_aug is None else train_aug
    tf = Transform(load_size, crop_size, flip and train, train)
    if kind == "aligned":
        return AlignedDataset(root, split, direction, tf, seed, exclude, unpaired)
    if kind == "unaligned":
        return UnalignedDataset(root, split, direction, tf, serial, seed, exclude)
    if kind == "single":
        folder = os.path.join(os.fspath(root), split) if split else root
        return SingleFolderDataset(folder, tf)
    raise ConfigError(f"dataset kind {kind!r} is not one of: aligned, unaligned, single")
