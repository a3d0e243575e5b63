"""Finding and reading images, with one-line errors naming the culprit."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")


def is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def list_images(folder, what: str = "image folder") -> list[str]:
    """Sorted image paths in ``folder`` (recursively); errors if missing or empty."""
    folder = os.fspath(folder)
    if not os.path.exists(folder):
        raise DataError(f"{what} not found: {folder}")
    if not os.path.isdir(folder):
        raise DataError(f"{what} is not a folder: {folder}")
    paths = sorted(
        os.path.join(root, f) for root, _, files in os.walk(folder) for f in files if is_image(f))
    if not paths:
        raise DataError(f"{what} has no images ({', '.join(IMG_EXTENSIONS)}): {folder}")
    return paths


def load_rgb(path, name: str = "") -> Image.Image:
    """Open an image fully (so truncation is caught here) and convert it to RGB; ``path``
    may be a file object, then ``name`` names it in the error."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {name or path}: "
                        f"{(str(e).splitlines() or [type(e).__name__])[0][:160]}") from None


def check_images(paths) -> None:
    """Decode every image once; raise on the first unreadable one."""
    for p in paths:
        load_rgb(p)


def to_tensor(im: Image.Image):
    """HWC uint8 RGB -> CHW float in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    a = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(a.transpose(2, 0, 1).copy())


def to_uint8(t) -> np.ndarray:
    """CHW tensor in [-1, 1] -> HWC uint8, rounded as saved images are."""
    a = ((t.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    return a.permute(1, 2, 0).numpy()


def save_png(arr: np.ndarray, path) -> None:
    Image.fromarray(arr).save(path, format="PNG")


def stem(path) -> str:
    return Path(path).stem
