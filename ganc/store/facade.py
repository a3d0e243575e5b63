"""The :class:`Store` a run writes through (top layer): objects (:mod:`.fs`) plus formats
(:mod:`.codecs`), commit units (:mod:`.units`), runs, downloads and pyarrow's view."""
from __future__ import annotations

import os
import posixpath
from typing import Any, Mapping, Optional

from . import codecs, units
from .fs import ObjectFS, s3_filesystem, write_local_atomic
from .keys import StoreError, check_key, check_run_id, split_url


class Store(ObjectFS):
    """Objects under one root URL, addressed by '/'-separated keys; a run's artifacts
    live under ``runs/<run_id>/``, reached with :meth:`run`."""

    def __repr__(self) -> str:
        return f"Store({self.url()!r})"

    def sub(self, prefix: str) -> "Store":
        """A store rooted at ``prefix`` inside this one."""
        return Store(self.fs, self.protocol, self._path(prefix), self.endpoint_url)

    def run(self, run_id: str) -> "Store":
        """The store of one run: ``runs/<run_id>/``."""
        return self.sub(f"runs/{check_run_id(run_id)}")

    def pyarrow_fs(self):
        """This store's filesystem for pyarrow users (Ray Train's and Tune's storage):
        on S3 every call is retried like the store's own (:func:`.retry.retrying`), so an
        S3 outage shorter than the retry budget does not fail a checkpoint or the
        experiment state. Carries no credentials (it is pickled into Ray's processes)."""
        import pyarrow.fs as pafs  # deferred: pyarrow
        if self.protocol != "s3":
            return pafs.LocalFileSystem()
        from .pyarrowfs import RetryingFSSpecHandler  # deferred: imports pyarrow
        return pafs.PyFileSystem(RetryingFSSpecHandler(self.fs))

    # ------------------------------------------------------------------ local copies
    def get_file(self, key: str, local_path) -> str:
        """Download ``key`` to ``local_path`` (written atomically); returns the local path."""
        data = self.read_bytes(key)
        write_local_atomic(os.fspath(local_path), data)
        return os.fspath(local_path)

    def download(self, prefix: str, local_dir) -> list[str]:
        """Copy every object under ``prefix`` into ``local_dir``; returns local paths.

        Refuses keys that would land outside ``local_dir``.
        """
        local_dir = os.path.abspath(os.fspath(local_dir))
        keys = self.ls(prefix)
        if not keys:
            raise StoreError(f"nothing to download: no objects under {self.url(prefix)}")
        base = check_key(prefix, allow_empty=True)
        plan = []
        for k in keys:
            rel = k[len(base):].lstrip("/") if base and k.startswith(base) else k
            rel = rel or posixpath.basename(k)
            dest = os.path.normpath(os.path.join(local_dir, *rel.split("/")))
            if os.path.isabs(rel) or not dest.startswith(local_dir + os.sep):
                raise StoreError(f"refusing to download {self._url_unchecked(k)}: it would be "
                                 f"written outside {local_dir}")
            plan.append((k, dest))
        out = []
        for k, dest in plan:
            write_local_atomic(dest, self.read_bytes(k))
            out.append(dest)
        return out

    # ------------------------------------------------------------------ units
    def commit_unit(self, prefix: str, files: Mapping[str, bytes]) -> dict:
        """Write a multi-file artifact (``{name: bytes or a JSON-able object}``) as a
        unit under ``prefix``: the old manifest is removed first (from then on the unit
        reads as incomplete), each file is written atomically, and
        ``<prefix>/MANIFEST.json`` (names, sizes, sha256) is written last. Readers trust
        only the manifest (:meth:`read_unit`). Returns the manifest."""
        return units.commit_unit(self, prefix, files)

    def update_unit_file(self, prefix: str, name: str, data) -> dict:
        """Rewrite one file of the committed unit at ``prefix`` (e.g. a model card gaining
        a figure) and its manifest entry: the manifest is removed first and written last,
        as :meth:`commit_unit` does, so a reader never pairs the new file with an old hash.
        Returns the new manifest; raises StoreError when there is no committed unit."""
        return units.update_unit_file(self, prefix, name, data)

    def read_unit(self, prefix: str) -> Optional[dict]:
        """The manifest of the unit at ``prefix``, or None while there is none (never
        committed, or being rewritten)."""
        return units.read_unit(self, prefix)

    def read_unit_file(self, prefix: str, name: str, manifest: dict) -> bytes:
        """A file of a committed unit, checked against the manifest's size and hash."""
        return units.read_unit_file(self, prefix, name, manifest)

    # ------------------------------------------------------------------ formats
    def put_json(self, key: str, obj: Any) -> str:
        return self.write_bytes(key, codecs.encode_json(obj, self.url(key)))

    def get_json(self, key: str) -> Any:
        return codecs.decode_json(self.read_bytes(key), self.url(key))

    def put_npz(self, key: str, arrays: Optional[Mapping[str, Any]] = None, **more) -> str:
        data = codecs.encode_npz({**(arrays or {}), **more}, self.url(key))
        return self.write_bytes(key, data)

    def get_npz(self, key: str) -> dict:
        return codecs.decode_npz(self.read_bytes(key), self.url(key))

    def put_parquet(self, key: str, rows) -> str:
        """Write a pyarrow Table, a list of row dicts or a dict of columns as Parquet."""
        return self.write_bytes(key, codecs.encode_parquet(rows, self.url(key)))

    def get_parquet(self, key: str):
        """The pyarrow Table at ``key``."""
        return codecs.decode_parquet(self.read_bytes(key), self.url(key))

    def put_torch(self, key: str, obj: Any) -> str:
        """``torch.save`` of a state dict (or any weights-only-loadable object)."""
        return self.write_bytes(key, codecs.torch_bytes(obj))

    def get_torch(self, key: str) -> Any:
        """``torch.load(..., weights_only=True)`` of ``key``: tensors, numbers, containers."""
        return codecs.torch_from_bytes(self.read_bytes(key), self.url(key))

    def get_state_dict(self, key: str) -> dict:
        """A state dict of tensors at ``key`` (through ``ganc.weights.read_state_dict``)."""
        return codecs.decode_state_dict(self.read_bytes(key), self.url(key))


def open_store(url, endpoint_url: Optional[str] = None, **s3_options) -> Store:
    """A store at ``url``: a folder path, ``file:///abs/path`` or ``s3://bucket/prefix``.

    ``s3_options`` go to ``s3fs.S3FileSystem`` (e.g. ``config_kwargs``), except
    ``retries``: s3fs's attempts per call (default 1: the store retries, :mod:`.retry`).
    """
    if isinstance(url, Store):
        return url
    protocol, path = split_url(url)
    if protocol == "file":
        from fsspec.implementations.local import LocalFileSystem  # deferred: fsspec
        if os.path.exists(path) and not os.path.isdir(path):
            raise StoreError(f"store path {path} exists and is not a folder")
        return Store(LocalFileSystem(), "file", path)
    fs, endpoint = s3_filesystem(endpoint_url or None, s3_options)
    return Store(fs, "s3", path, endpoint)


def store_from_config(cfg) -> Store:
    """The store of a ``StoreConfig`` (``url`` and ``endpoint_url``)."""
    return open_store(cfg.url, endpoint_url=getattr(cfg, "endpoint_url", "") or None)
