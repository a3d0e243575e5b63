"""Procedurally generated translation datasets: label maps of random shapes <-> shaded
renderings of them. A real task that small generators learn within minutes on a CPU
(a colour per class, a dark outline, shading that brightens inwards, a shadow cast
straight down: all local and symmetric under horizontal flips), deterministic for a seed.

Layouts written by :func:`make_demo_data`:
- paired:   ``<out>/train/*.png`` and ``<out>/val/*.png``, A (labels) | B (rendering) side by side
- unpaired: ``<out>/trainA``, ``trainB``, ``testA``, ``testB`` (A and B from different scenes)
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..errors import ConfigError
from .staging import check_empty_target, staged_folder

# Label colours (background + 4 classes) and the rendering's base colours.
LABEL_COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]],
                         dtype=np.uint8)
BASE_COLOURS = np.array([[0.86, 0.83, 0.76], [0.85, 0.30, 0.20], [0.25, 0.65, 0.35],
                         [0.22, 0.38, 0.85], [0.95, 0.75, 0.20]], dtype=np.float32)
ROUNDING = 4        # pixels over which an object brightens from its outline inwards
OUTLINE = 0.35      # brightness of an object's outline pixels
SHADOW = 3          # pixels of shadow cast straight down
KINDS = ("paired", "unpaired")
# Bumped whenever the generated images change, so a cache of an older task is not reused.
TASK_VERSION = 2


def demo_folder_name(kind: str, n: int, size: int, seed: int) -> str:
    """Cache folder name of a generated dataset (its parameters and the task version)."""
    return f"{kind}-{n}-{size}-{seed}-task{TASK_VERSION}"


def _scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """An integer label map with 2-5 random circles, rectangles and triangles."""
    labels = np.zeros((size, size), dtype=np.int64)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(rng.integers(2, 6)):
        cls = int(rng.integers(1, len(LABEL_COLOURS)))
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        r = rng.uniform(0.1, 0.28) * size
        shape = rng.integers(0, 3)
        if shape == 0:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2
        elif shape == 1:
            rw, rh = r * rng.uniform(0.6, 1.4), r * rng.uniform(0.6, 1.4)
            mask = (abs(xx - cx) <= rw) & (abs(yy - cy) <= rh)
        else:
            mask = (yy - cy <= r) & (yy - cy >= -r + 2 * abs(xx - cx))
        labels[mask] = cls
    return labels


def _depth(labels: np.ndarray, cap: int) -> np.ndarray:
    """How many 4-neighbour erosions each pixel survives inside its own label region
    (0 on a region's boundary), capped at ``cap``. The image border is no boundary
    (edge padding), so the map commutes with crops and flips."""
    h, w = labels.shape
    depth = np.zeros(labels.shape, dtype=np.int64)
    inside = np.ones(labels.shape, dtype=bool)
    pad_l = np.pad(labels, 1, mode="edge")
    for _ in range(cap):
        pad_i = np.pad(inside, 1, mode="edge")
        keep = inside.copy()
        for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):      # up, down, left, right
            keep &= pad_i[dy:dy + h, dx:dx + w] & (pad_l[dy:dy + h, dx:dx + w] == labels)
        inside = keep
        depth += inside
    return depth


def _render(labels: np.ndarray) -> np.ndarray:
    """Shaded rendering of a label map (uint8 HxWx3), a local function of the labels:
    each object in its class colour, dark on its outline and brightening towards its
    inside (a rounded, lit look), casting a shadow straight down onto the background.
    Every term depends only on a small neighbourhood and is symmetric under horizontal
    flips, so a translation-equivariant generator trained with crops and flips can
    learn it exactly (stripes or light from one side would not be predictable)."""
    depth = _depth(labels, ROUNDING)
    out = BASE_COLOURS[labels].copy()
    objects = labels > 0
    shade = np.where(depth == 0, OUTLINE, 0.6 + 0.4 * depth / ROUNDING)
    out[objects] *= shade[objects][:, None]
    shadow = np.zeros(labels.shape, dtype=np.float32)
    for k in range(1, SHADOW + 1):
        above = np.zeros_like(objects)
        above[k:] = objects[:-k]
        shadow = np.maximum(shadow, above * (1.0 - (k - 1) / SHADOW))
    bg = ~objects
    out[bg] *= (1.0 - 0.45 * shadow[bg])[:, None]
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def make_pair(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(label image, rendering) for one scene."""
    labels = _scene(np.random.default_rng(seed), size)
    return LABEL_COLOURS[labels], _render(labels)


def make_demo_data(kind: str, n: int, size: int, out, seed: int = 0,
                   n_test: int | None = None) -> dict:
    """Write a demo dataset atomically into ``out`` (which must not hold one already)."""
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r} is not one of: {', '.join(KINDS)}")
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if size < 16 or size % 4:
        raise ConfigError(f"--size must be a multiple of 4 and at least 16, got {size}")
    out = check_empty_target(out, "--out")
    n_test = n_test if n_test is not None else max(4, n // 4)
    info = {"kind": kind, "n": n, "n_test": n_test, "size": size, "seed": seed,
            "task": "label map (A) <-> shaded rendering (B)", "task_version": TASK_VERSION}
    with staged_folder(out, "demo.json", info, ".ganc-demo-") as tmp:
        base = seed * 1_000_003
        if kind == "paired":
            for split, count, offset in (("train", n, 0), ("val", n_test, 500_000)):
                os.makedirs(os.path.join(tmp, split))
                for i in range(count):
                    a, b = make_pair(base + offset + i, size)
                    Image.fromarray(np.concatenate([a, b], axis=1)).save(
                        os.path.join(tmp, split, f"{i:05d}.png"))
        else:
            # A and B of a split come from disjoint scenes: no pairing to exploit.
            for split, count, offset in (("train", n, 0), ("test", n_test, 500_000)):
                for dom, shift in (("A", 0), ("B", 250_000)):
                    os.makedirs(os.path.join(tmp, split + dom))
                    for i in range(count):
                        a, b = make_pair(base + offset + shift + i, size)
                        Image.fromarray(a if dom == "A" else b).save(
                            os.path.join(tmp, split + dom, f"{i:05d}.png"))
    return info
