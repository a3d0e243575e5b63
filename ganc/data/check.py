"""A run's dataset, checked before the run starts (:mod:`ganc.preflight`, ``ganc check``).

Every folder the run reads (:func:`folders`) must exist and hold images, the search and
val splits must leave images to train on, CamVid photos must pair with their label maps,
and images must decode: a sample of each folder (:data:`SAMPLE`, spread over the sorted
names) before a command starts, every image under ``ganc check`` (``full``). A URL
dataset is listed and a few images of each folder are read (:data:`REMOTE_SAMPLE`), never
copied whole. Each problem is one line naming the folder or the file.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

from ..errors import DataError, Findings
from .camvid import load_label_map, pair_by_name
from .images import IMG_EXTENSIONS, is_image, load_rgb
from .source import local_path, read_remote, remote_listing
from .splits import (eval_split, has_label_maps, has_search_split, has_val_split, search_count,
                     train_folders, val_count)

SAMPLE = 8            # images decoded per local folder before a command starts
REMOTE_SAMPLE = 2     # images read per folder of a URL dataset
MAX_BAD = 5           # unreadable images named per folder; the rest are counted


@dataclass(frozen=True)
class Folder:
    rel: str               # relative to data.root
    what: str              # what the run reads it as ("training", "evaluation", ...)
    labels: bool = False   # CamVid label maps (<split>annot)
    halves: bool = False   # aligned A|B images: the width must be even
    train: bool = False    # a training folder the search and val splits hold images out of


def folders(data, stages=None) -> list[Folder]:
    """The folders of ``data.root`` the ``stages`` (None: every stage) read: the training
    split with its label maps; for stages that score (any after the teacher, whose val PSNR
    is optional) ``data.fid_real``; and the eval split (unless ``data.val_split`` holds one
    out of training) with its label maps for the report, or for scoring stages when no
    ``data.search_split`` is held out to score on."""
    halves, maps = data.kind == "aligned", has_label_maps(data)
    scoring = stages is None or bool(set(stages) - {"teacher"})
    evaluates = stages is None or "report" in stages or (scoring and not has_search_split(data))
    out = [Folder(f, "training", halves=halves, train=True) for f in train_folders(data)]
    if maps:
        out.append(Folder(data.train_split + "annot", "training label maps", labels=True))
    if evaluates and not has_val_split(data):
        ev = eval_split(data)
        if data.kind == "unaligned":
            src, dst = ("A", "B") if data.direction == "AtoB" else ("B", "A")
            out.append(Folder(ev + src, "evaluation inputs (data.eval_split)"))
            if not data.fid_real:
                out.append(Folder(ev + dst, "evaluation targets (data.eval_split)"))
        else:
            out.append(Folder(ev, "evaluation (data.eval_split)", halves=halves))
        if maps:
            out.append(Folder(ev + "annot", "evaluation label maps", labels=True))
    out += [Folder(f.strip().strip("/"), "data.fid_real") for f in data.fid_real.split(",")
            if f.strip() and scoring]
    seen, unique = set(), []
    for f in out:
        if f.rel not in seen:
            seen.add(f.rel)
            unique.append(f)
    return unique


def spread(items: list, n) -> list:
    """``n`` items spread over ``items`` (first and last included); all when ``n`` is None."""
    if n is None or len(items) <= n:
        return list(items)
    step = (len(items) - 1) / (n - 1)
    return [items[round(i * step)] for i in range(n)]


def _decode(folder: Folder, src, name: str):
    """The (width, height) of one image (None for a label map); one line when it is not
    what the run can read."""
    if folder.labels:
        load_label_map(src, name)
        return None
    im = load_rgb(src, name)
    if folder.halves and im.size[0] % 2:
        raise DataError(f"aligned image {name} has odd width {im.size[0]}; A and B must be "
                        "side by side at equal widths")
    return im.size


def _decode_all(folder: Folder, items, found: Findings) -> set:
    """Decode ``items`` ((source, name) pairs); the sizes seen. Unreadable ones become
    problems (the first :data:`MAX_BAD` named, then a count)."""
    sizes, bad = set(), []
    for src, name in items:
        try:
            size = _decode(folder, src, name)
        except DataError as e:
            bad.append(e)
            continue
        if size:
            sizes.add(size)
    found.problems += bad[:MAX_BAD]
    if len(bad) > MAX_BAD:
        found.problems.append(DataError(f"{folder.rel}/: {len(bad) - MAX_BAD} more unreadable "
                                        "image(s) not named"))
    return sizes


def _holdouts(data, folder: Folder, n: int) -> None:
    """The search and val splits of a training folder of ``n`` images leave some to train
    on (one line naming the field otherwise)."""
    if folder.train:
        search_count(data, n, folder.rel)
        val_count(data, n, folder.rel)


def _line(folder: Folder, n: int, decoded: int, sizes: set) -> str:
    shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:3])
    more = f" (+{len(sizes) - 3} more)" if len(sizes) > 3 else ""
    return (f"data {folder.rel}/ ({folder.what}): {n} images, {decoded} decoded"
            + (f", sizes {shown}{more}" if shown else ""))


def _images(data, root: str, folder: Folder) -> list[str]:
    """The images of a local folder (relative to ``root``), sorted; one line naming
    ``data.root`` as given and the folder when it is missing or holds none."""
    path = os.path.join(root, folder.rel)
    where = f"data.root {data.root!r}: {folder.what} folder {folder.rel}/"
    if not os.path.exists(path):
        raise DataError(f"{where} not found")
    if not os.path.isdir(path):
        raise DataError(f"{where} is not a folder")
    names = sorted(os.path.relpath(os.path.join(r, f), root)
                   for r, _, files in os.walk(path) for f in files if is_image(f))
    if not names:
        raise DataError(f"{where} holds no images ({', '.join(IMG_EXTENSIONS)})")
    return names


def _check_local_folder(data, root: str, folder: Folder, full: bool, found: Findings):
    names = _images(data, root, folder)
    found.attempt(_holdouts, data, folder, len(names))
    chosen = spread(names, None if full else SAMPLE)
    items = [(os.path.join(root, n), os.path.join(data.root, n)) for n in chosen]
    sizes = _decode_all(folder, items, found)
    found.checked.append(_line(folder, len(names), len(chosen), sizes))


def check_local(data, root: str, full: bool = False, stages=None) -> Findings:
    """The folders of the dataset at the local folder ``root`` that ``stages`` read (see
    :func:`folders`); ``full``: every image decoded."""
    found = Findings()
    if not os.path.isdir(root):
        found.problems.append(DataError(f"data.root {data.root!r}: folder not found"))
        return found
    chosen = folders(data, stages)
    for folder in chosen:
        found.attempt(_check_local_folder, data, root, folder, full, found)
    if has_label_maps(data) and not found.problems:
        rels = {f.rel for f in chosen}
        splits = [f.rel for f in chosen if not f.labels and f.rel + "annot" in rels]
        for split in dict.fromkeys(splits):
            found.attempt(pair_by_name, os.path.join(root, split),
                          os.path.join(root, split + "annot"), f"CamVid split {split!r}",
                          f"CamVid split {split!r} labels")
    return found


def check_remote(data, url: str, endpoint_url: str = "", stages=None) -> Findings:
    """The listing of a dataset URL and :data:`REMOTE_SAMPLE` images of each folder that
    ``stages`` read."""
    found = Findings()
    listing = found.attempt(remote_listing, url, endpoint_url)
    if listing is None:
        return found
    for folder in folders(data, stages):
        keys = sorted(k for k in listing if k.startswith(folder.rel + "/") and is_image(k))
        if not keys:
            found.problems.append(DataError(f"data.root {url!r}: no images under "
                                            f"{folder.rel}/ ({folder.what})"))
            continue
        found.attempt(_holdouts, data, folder, len(keys))
        items = []
        for k in spread(keys, REMOTE_SAMPLE):
            data_bytes = found.attempt(read_remote, url, k, endpoint_url)
            if data_bytes is not None:
                items.append((io.BytesIO(data_bytes), f"{url.rstrip('/')}/{k}"))
        sizes = _decode_all(folder, items, found)
        found.checked.append(_line(folder, len(keys), len(items), sizes))
    return found


def check_dataset(data, endpoint_url: str = "", full: bool = False, stages=None) -> Findings:
    """The dataset of a ``DataConfig`` as ``stages`` (None: every stage) read it: a local
    root folder (``full``: every image decoded) or a URL (its listing and a sample);
    generated demo data is not checked."""
    if not data.root:
        found = Findings()
        found.checked.append("data: generated demo data (data.root ''), not checked")
        return found
    path = local_path(data.root)
    if path is None:
        return check_remote(data, data.root, endpoint_url, stages)
    return check_local(data, path, full, stages)


__all__ = ["check_dataset", "check_local", "check_remote", "folders", "spread", "SAMPLE"]
