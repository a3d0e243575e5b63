"""Where a dataset lives: a local folder, or any fsspec URL copied once per node.

``data.root`` is a local folder, ``file:///abs/path`` or a URL such as
``s3://bucket/prefix`` (any fsspec protocol; S3 honours ``store.endpoint_url`` /
``AWS_ENDPOINT_URL`` and the node's default AWS credential chain). The datasets of
:mod:`ganc.data.datasets` read local folders only, so every process that needs the images
(Train workers, the FID pool's driver, pruning trials) calls :meth:`DataRef.local`, which
for a URL materialises the dataset into this node's cache::

    <GANC_CACHE>/data/<sha256 of the URL>/          the files, same layout as the URL
    <GANC_CACHE>/data/<sha256 of the URL>.lock      one process of the node syncs at a time
    <GANC_CACHE>/data/<...>/.ganc-manifest.json     {relative key: [size, ETag]} of the copy

A copy is re-synced (changed and new files downloaded, removed ones deleted) only when the
remote listing's sizes/ETags differ from the manifest, which is written last, so an
interrupted copy is completed by the next caller.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Optional

from ..cache import cache_dir, file_lock
from ..errors import ConfigError, DataError
from ..store import open_store
from ..store.keys import TEMP_RE
from .demo import demo_folder_name, make_demo_data
from .images import is_image

MANIFEST = ".ganc-manifest.json"
_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")


def url_protocol(root: str) -> Optional[str]:
    """The URL scheme of ``root`` (lower case), or None for a plain path."""
    m = _URL_RE.match(root or "")
    return m.group(1).lower() if m else None


def local_path(root: str) -> Optional[str]:
    """The absolute local path a root names (plain path or ``file://``), else None."""
    proto = url_protocol(root)
    if proto is None:
        return os.path.abspath(os.path.expanduser(root))
    if proto == "file":
        rest = root.split("://", 1)[1]
        if not rest.startswith("/"):
            raise ConfigError(f"data.root {root!r}: file URLs need an absolute path (file:///...)")
        return os.path.abspath(rest)
    return None


@dataclass(frozen=True)
class DataRef:
    """A resolved dataset root: a local folder or a URL (what workers are given)."""

    root: str
    endpoint_url: str = ""

    @property
    def remote(self) -> bool:
        return local_path(self.root) is None

    @property
    def name(self) -> str:
        """The dataset's name: the last part of its path or URL."""
        return self.root.rstrip("/").rsplit("/", 1)[-1] or self.root

    def to_spec(self) -> dict:
        return {"root": self.root, "endpoint_url": self.endpoint_url}

    @classmethod
    def from_spec(cls, spec: dict) -> "DataRef":
        return cls(str(spec["root"]), str(spec.get("endpoint_url") or ""))

    def local(self) -> str:
        """A local folder holding the dataset on this node (copied there for a URL)."""
        if not self.remote:
            path = local_path(self.root)
            if not os.path.isdir(path):
                raise DataError(f"data.root {self.root!r}: folder not found on this node "
                                f"({os.uname().nodename})")
            return path
        return materialize(self.root, self.endpoint_url)

    def count_images(self, sub: str) -> int:
        """Images under ``<root>/<sub>`` (recursively), without copying a URL dataset."""
        if not self.remote:
            folder = os.path.join(local_path(self.root), sub)
            if not os.path.isdir(folder):
                return 0
            return sum(1 for _, _, files in os.walk(folder) for f in files if is_image(f))
        prefix = sub.strip("/") + "/"
        return sum(1 for rel in remote_listing(self.root, self.endpoint_url)
                   if rel.startswith(prefix) and is_image(rel))


# ---------------------------------------------------------------- remote copies
def _filesystem(url: str, endpoint_url: str = ""):
    """(fsspec filesystem, root path) of a dataset URL."""
    proto = url_protocol(url)
    if proto in ("s3", "s3a"):
        st = open_store(url, endpoint_url=endpoint_url or None)
        return st.fs, st.root
    try:
        import fsspec  # deferred: fsspec
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise ConfigError(f"data.root {url!r}: no filesystem for {proto}:// "
                          f"({str(e).splitlines()[0][:120]})") from None
    return fs, path.rstrip("/")


def remote_listing(url: str, endpoint_url: str = "") -> dict:
    """``{relative key: [size, ETag or mtime]}`` of every file under a dataset URL."""
    fs, root = _filesystem(url, endpoint_url)
    try:
        found = fs.find(root, detail=True)
    except Exception as e:
        raise DataError(f"data.root {url!r}: cannot list it: "
                        f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else e!r}") \
            from None
    out = {}
    for path, info in found.items():
        path = str(path)
        rel = path[len(root):].lstrip("/") if path.startswith(root) else path
        if not rel or rel.endswith("/") or TEMP_RE.search(rel) or info.get("type") == "directory":
            continue
        if rel.split("/")[-1] == MANIFEST:
            continue
        tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
        out[rel] = [int(info.get("size") or 0), str(tag or "")]
    return out


def read_remote(url: str, rel: str, endpoint_url: str = "") -> bytes:
    """The bytes of one file of a dataset URL (``rel``: its key relative to the URL)."""
    fs, root = _filesystem(url, endpoint_url)
    try:
        return fs.cat_file(f"{root}/{rel}")
    except Exception as e:
        raise DataError(f"data.root {url!r}: cannot read {rel}: "
                        f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else e!r}") \
            from None


def cache_folder(url: str) -> str:
    return os.path.join(cache_dir(), "data", hashlib.sha256(url.encode()).hexdigest()[:24])


def _read_manifest(folder: str) -> dict:
    try:
        with open(os.path.join(folder, MANIFEST)) as f:
            doc = json.load(f)
        return doc.get("files", {}) if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def materialize(url: str, endpoint_url: str = "") -> str:
    """A local copy of the dataset at ``url`` in this node's cache (see module docstring)."""
    folder = cache_folder(url)
    with file_lock(folder + ".lock"):
        remote = remote_listing(url, endpoint_url)
        if not remote:
            raise DataError(f"data.root {url!r}: no files found there")
        have = _read_manifest(folder)
        stale = [rel for rel, meta in sorted(remote.items())
                 if have.get(rel) != meta or not os.path.isfile(os.path.join(folder, rel))]
        gone = [rel for rel in have if rel not in remote]
        if not stale and not gone:
            return folder
        fs, root = _filesystem(url, endpoint_url)
        for rel in gone:
            try:
                os.remove(os.path.join(folder, rel))
            except OSError:
                pass
        if stale:
            local = [os.path.join(folder, *rel.split("/")) for rel in stale]
            for p in local:
                os.makedirs(os.path.dirname(p), exist_ok=True)
            try:
                fs.get([f"{root}/{rel}" for rel in stale], local)
            except Exception as e:
                raise DataError(f"data.root {url!r}: copying {len(stale)} files to {folder} "
                                f"failed: {str(e).strip().splitlines()[0][:160]}") from None
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f"{MANIFEST}.{uuid.uuid4().hex}")
        with open(tmp, "w") as f:
            json.dump({"url": url, "files": remote}, f)
        os.replace(tmp, os.path.join(folder, MANIFEST))
    return folder


# ---------------------------------------------------------------- generated demo data
def demo_kind(kind: str) -> str:
    if kind == "aligned":
        return "paired"
    if kind == "unaligned":
        return "unpaired"
    if kind == "camvid":
        raise ConfigError("data.kind 'camvid' needs data.root (a folder in CamVid's layout; "
                          "generated demo data exists for aligned and unaligned only)")
    raise ConfigError(f"data.kind {kind!r} is not one of: aligned, unaligned, camvid")


def demo_name(data) -> str:
    """The folder name of the generated dataset a DataConfig describes."""
    return demo_folder_name(demo_kind(data.kind), data.demo_n, data.demo_size, data.demo_seed)


def local_demo_data(data) -> str:
    """Generated demo data for a DataConfig, made once into ``<GANC_CACHE>/demo/<name>``."""
    out = os.path.join(cache_dir(), "demo", demo_name(data))
    if not os.path.isfile(os.path.join(out, "demo.json")):
        try:
            make_demo_data(demo_kind(data.kind), data.demo_n, data.demo_size, out,
                           seed=data.demo_seed)
        except (ConfigError, OSError):
            if not os.path.isfile(os.path.join(out, "demo.json")):  # lost a race: fine
                raise
    return out


def upload_folder(store, prefix: str, folder: str, last: str = "") -> None:
    """Copy every file of ``folder`` to ``<store>/<prefix>/``; ``last`` (a relative path)
    goes last, so its presence marks a complete copy."""
    files = sorted(os.path.relpath(os.path.join(r, f), folder).replace(os.sep, "/")
                   for r, _, fs in os.walk(folder) for f in fs)
    for rel in [f for f in files if f != last] + ([last] if last in files else []):
        store.put_file(f"{prefix}/{rel}", os.path.join(folder, rel))


__all__ = ["DataRef", "materialize", "remote_listing", "read_remote", "local_path", "url_protocol",
           "cache_folder", "local_demo_data", "demo_name", "demo_kind", "upload_folder"]
