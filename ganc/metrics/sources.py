"""Image sources for FID/KID: folders of images, tensors and iterables of generated batches.

Everything reaches the feature extractor as uint8 RGB batches (N, 3, H, W). Generated
images in [-1, 1] are quantised exactly as saved images are (``ganc.data.images.to_uint8``):
``round((clamp(x, -1, 1) + 1) * 127.5)``, so scoring tensors gives the FID of the PNGs
that ``ganc translate`` would write.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..cache import cache_dir, file_lock
from ..data.images import list_images, load_rgb
from ..errors import ConfigError, DataError

CROPS = ("full", "left", "right")


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] (any leading shape, channels first) -> uint8, as saved."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@dataclass(frozen=True)
class FolderSource:
    """Images of one or more folders (recursively), optionally cropped and resized.

    ``crop``: ``full``, or ``left``/``right`` half of side-by-side aligned (A|B) images.
    ``size``: resize to ``size`` x ``size`` (bicubic, as the test-time transform does);
    0 keeps the native size (the extractor resizes to 299 itself).
    ``only``: when given, just these files (names relative to their folder, '/'-separated),
    e.g. a search split held out of a training folder.
    """

    folders: tuple[str, ...]
    crop: str = "full"
    size: int = 0
    only: tuple[str, ...] = ()

    def __post_init__(self):
        folders = (self.folders,) if isinstance(self.folders, (str, os.PathLike)) \
            else tuple(self.folders)
        if not folders:
            raise ConfigError("image source needs at least one folder")
        object.__setattr__(self, "folders", tuple(os.path.abspath(os.fspath(f))
                                                  for f in folders))
        if self.crop not in CROPS:
            raise ConfigError(f"image crop {self.crop!r} is not one of: {', '.join(CROPS)}")
        if int(self.size) < 0:
            raise ConfigError(f"image size must be >= 0, got {self.size}")
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "only", tuple(sorted(self.only)))

    def _listing(self, folder: str) -> list[str]:
        paths = list_images(folder, "image folder")
        if not self.only:
            return paths
        keep = set(self.only)
        paths = [p for p in paths if os.path.relpath(p, folder).replace(os.sep, "/") in keep]
        if not paths:
            raise DataError(f"image folder {folder} holds none of the {len(keep)} images "
                            "of its selection")
        return paths

    def paths(self) -> list[str]:
        out = []
        for f in self.folders:
            out += self._listing(f)
        return out

    def __len__(self) -> int:
        return len(self.paths())

    def describe(self) -> str:
        extra = ("" if self.crop == "full" else f" [{self.crop} half]") + \
            (f" at {self.size}px" if self.size else "") + \
            (f" ({len(self.only)} selected images)" if self.only else "")
        return ",".join(self.folders) + extra

    def fingerprint(self) -> str:
        """Hash of what the images are: the bytes of every file (in listing order), the
        crop and the size. Any file added, removed or rewritten changes it, whatever its
        name, size or folder; two folders of the same bytes share it. Each file's bytes
        are hashed once per node and remembered by path, mtime and size
        (:func:`content_digests`)."""
        entries = []
        for i, folder in enumerate(self.folders):
            digests = content_digests(folder, self._listing(folder))
            entries += [[i, d] for d in digests]
        doc = {"content": entries, "crop": self.crop, "size": self.size}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def load(self, path: str) -> torch.Tensor:
        im = load_rgb(path)
        if self.crop != "full":
            w, h = im.size
            if w % 2:
                raise DataError(f"image {path} has odd width {w}; cannot take its "
                                f"{self.crop} half")
            im = im.crop((0, 0, w // 2, h) if self.crop == "left" else (w // 2, 0, w, h))
        if self.size:
            im = im.resize((self.size, self.size), Image.BICUBIC)
        return torch.from_numpy(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy())

    def load_all(self) -> torch.Tensor:
        """All images stacked as uint8 (N, 3, H, W); they must share a size."""
        imgs = [self.load(p) for p in self.paths()]
        shapes = {tuple(t.shape) for t in imgs}
        if len(shapes) > 1:
            raise DataError(f"images in {self.describe()} have different sizes "
                            f"({sorted(shapes)[:3]}...); give a size to resize them to")
        return torch.stack(imgs)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        return _group_same_shape((self.load(p) for p in self.paths()), batch_size)


DIGESTS = "content-digests"      # <GANC_CACHE>/content-digests/<hash of the folder>.json


def hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_digests(folder: str, paths: Sequence[str]) -> list[str]:
    """sha256 of each file's bytes. A node-local record per folder
    (``GANC_CACHE/content-digests/``) keeps each digest with the file's mtime and size, so
    a file is read again only when one of them changed."""
    folder = os.path.abspath(folder)
    record_path = os.path.join(cache_dir(), DIGESTS,
                               hashlib.sha256(folder.encode()).hexdigest()[:24] + ".json")
    with file_lock(record_path + ".lock"):
        try:
            with open(record_path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            record = {}
        known = record.get("files", {}) if record.get("folder") == folder else {}
        files, out = {}, []
        for p in paths:
            st = os.stat(p)
            rel = os.path.relpath(p, folder).replace(os.sep, "/")
            stamp = [st.st_mtime_ns, st.st_size]
            entry = known.get(rel)
            digest = entry[2] if entry and entry[:2] == stamp else hash_file(p)
            files[rel] = stamp + [digest]
            out.append(digest)
        if files != known:
            tmp = f"{record_path}.tmp-{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump({"folder": folder, "files": files}, f)
            os.replace(tmp, record_path)
    return out


def _group_same_shape(images: Iterable[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    buf: list[torch.Tensor] = []
    for t in images:
        if buf and (len(buf) >= batch_size or t.shape != buf[0].shape):
            yield torch.stack(buf)
            buf = []
        buf.append(t)
    if buf:
        yield torch.stack(buf)


Source = Union[str, os.PathLike, FolderSource, torch.Tensor, np.ndarray, Iterable]


def as_uint8_batch(x, where: str = "images") -> torch.Tensor:
    """One batch as uint8 (N, 3, H, W): uint8 as is, float in [-1, 1] quantised."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
        if x.dim() in (3, 4) and x.shape[-1] == 3 and x.shape[-3] != 3:
            x = x.movedim(-1, -3)                              # HWC -> CHW
    if not torch.is_tensor(x):
        raise DataError(f"{where}: expected a tensor or array of images, got "
                        f"{type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise DataError(f"{where}: expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x
    if x.is_floating_point():
        return quantize(x)
    raise DataError(f"{where}: expected uint8 or float images in [-1, 1], got {x.dtype}")


def iter_batches(source: Source, batch_size: int = 16, where: str = "images"
                 ) -> Iterator[torch.Tensor]:
    """uint8 (N, 3, H, W) batches from a folder, FolderSource, tensor or iterable of them."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    if isinstance(source, (str, os.PathLike)):
        source = FolderSource((os.fspath(source),))
    if isinstance(source, FolderSource):
        yield from source.batches(batch_size)
        return
    if torch.is_tensor(source) or isinstance(source, np.ndarray):
        full = as_uint8_batch(source, where)
        for i in range(0, full.shape[0], batch_size):
            yield full[i:i + batch_size]
        return
    if isinstance(source, Sequence) and source and all(
            isinstance(s, (str, os.PathLike)) for s in source):
        yield from FolderSource(tuple(os.fspath(s) for s in source)).batches(batch_size)
        return
    try:
        it = iter(source)
    except TypeError:
        raise DataError(f"{where}: cannot read images from {type(source).__name__}") from None
    for item in it:
        b = as_uint8_batch(item, where)
        for i in range(0, b.shape[0], batch_size):
            yield b[i:i + batch_size]


def as_source(x) -> Source:
    """Folder paths become a FolderSource; everything else is returned as is."""
    if isinstance(x, (str, os.PathLike)):
        return FolderSource((os.fspath(x),))
    if isinstance(x, (list, tuple)) and x and all(isinstance(s, (str, os.PathLike)) for s in x):
        return FolderSource(tuple(os.fspath(s) for s in x))
    return x
