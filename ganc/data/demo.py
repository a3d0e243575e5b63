"""Procedurally generated translation datasets: label maps of random shapes <-> shaded,
textured renderings of them. A real, learnable task (colour per class, a class-specific
texture and a light direction shared by all images), deterministic for a seed.

Layouts written by :func:`make_demo_data`:
- paired:   ``<out>/train/*.png`` and ``<out>/val/*.png``, A (labels) | B (rendering) side by side
- unpaired: ``<out>/trainA``, ``trainB``, ``testA``, ``testB`` (A and B from different scenes)
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
from PIL import Image

from ..errors import ConfigError

# Label colours (background + 4 classes) and the rendering's base colours.
LABEL_COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]],
                         dtype=np.uint8)
BASE_COLOURS = np.array([[0.55, 0.50, 0.45], [0.80, 0.35, 0.25], [0.30, 0.65, 0.35],
                         [0.25, 0.40, 0.80], [0.85, 0.75, 0.30]], dtype=np.float32)
KINDS = ("paired", "unpaired")


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


def _render(labels: np.ndarray) -> np.ndarray:
    """Shaded, textured RGB rendering of a label map (uint8 HxWx3)."""
    size = labels.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = BASE_COLOURS[labels].copy()
    # Class textures: stripes at class-specific angle and frequency, checker on class 4.
    for cls in range(1, len(BASE_COLOURS)):
        m = labels == cls
        if not m.any():
            continue
        angle = cls * np.pi / 5
        freq = 6 + 3 * cls
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)))
        if cls == 4:
            stripes = ((np.floor(xx * 12) + np.floor(yy * 12)) % 2).astype(np.float32)
        out[m] *= (0.75 + 0.25 * stripes[m])[:, None]
    # Shading: light from the top left, and a soft shadow near class boundaries.
    light = 0.75 + 0.35 * (1.0 - (xx + yy) / 2)
    edge = np.zeros_like(light)
    edge[1:, :] += labels[1:, :] != labels[:-1, :]
    edge[:, 1:] += labels[:, 1:] != labels[:, :-1]
    out *= (light * (1 - 0.35 * np.clip(edge, 0, 1)))[..., None]
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
    out = os.fspath(out)
    if os.path.isdir(out) and os.listdir(out):
        raise ConfigError(f"--out {out} exists and is not empty")
    n_test = n_test if n_test is not None else max(4, n // 4)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".ganc-demo-", dir=parent)
    try:
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
        info = {"kind": kind, "n": n, "n_test": n_test, "size": size, "seed": seed,
                "task": "label map (A) <-> shaded textured rendering (B)"}
        with open(os.path.join(tmp, "demo.json"), "w") as f:
            json.dump(info, f, indent=1)
        if os.path.isdir(out):
            os.rmdir(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info
