"""Artifact store on fsspec: local folders (``file://``) and S3 (``s3://bucket/prefix``).

Everything a run writes goes through a :class:`Store` rooted at a URL; a run's artifacts
live under ``runs/<run_id>/`` (GUIDE §1), reached with ``store.run(run_id)``.

Writes are atomic: the bytes go to a temporary key ``<key>.tmp-<32 hex>`` first and are
then moved onto the final key, so a reader sees either the old object or the whole new
one, never half a file. Temporary keys left behind by a crash are hidden from
:meth:`Store.ls` and :meth:`Store.exists` and removed by :meth:`Store.clean_temp`.

S3 endpoint and credentials: ``endpoint_url`` (the ``store.endpoint_url`` config field) or
the ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` environment variables for S3-compatible
servers; credentials from the usual AWS environment variables / config files (never
logged, never part of a URL this module prints).
"""
from __future__ import annotations

import io
import json
import logging
import os
import posixpath
import re
import time
import uuid
from pathlib import Path
from typing import Any, Mapping, Optional

from .errors import GancError

__all__ = ["Store", "StoreError", "open_store", "store_from_config", "split_url", "MANIFEST"]

_TEMP_RE = re.compile(r"\.tmp-[0-9a-f]{32}$")
MANIFEST = "MANIFEST.json"     # written last by Store.commit_unit: the unit is complete
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,127}$")


class StoreError(GancError):
    """A missing object, an unreachable store or an invalid key, in one line."""


log = logging.getLogger("ganc.store")

# S3 calls that fail for a passing reason (throttling, a 5xx, a refused or dropped
# connection) are retried after these pauses (seconds), each attempt logged as one line
# naming the action, the URL and the error (never a credential); then the error stands.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)
THROTTLING_CODES = {"Throttling", "ThrottlingException", "ThrottledException", "SlowDown",
                    "RequestLimitExceeded", "TooManyRequestsException", "RequestThrottled",
                    "RequestTimeout", "RequestTimeTooSkewed", "InternalError",
                    "ServiceUnavailable", "BandwidthLimitExceeded"}


def transient(e: BaseException) -> bool:
    """Whether an S3 error is worth retrying: throttling, a 5xx answer, or no connection."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        try:
            from botocore.exceptions import ClientError, ConnectionError, HTTPClientError
        except ImportError:  # pragma: no cover
            return False
        if isinstance(e, (ConnectionError, HTTPClientError)):
            return True
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return err.get("Code") in THROTTLING_CODES or int(status) >= 500 \
                or str(err.get("Code", "")).startswith("5")
        if isinstance(e, OSError) and not isinstance(e, (FileNotFoundError, PermissionError)):
            text = str(e)
            if any(code in text for code in THROTTLING_CODES) or \
                    re.search(r"\b50[0-4]\b", text):
                return True
        e = e.__cause__ or e.__context__
    return False


def retrying(action: str, url: str, fn, *args):
    """``fn(*args)``, retried on transient S3 errors after each pause of
    :data:`RETRY_DELAYS` (about 30 s in all, on top of botocore's own few retries), each
    retry logged as one line naming the action, the URL and the error; then the error
    stands. The one retry policy of ganc's S3 traffic (the store and Ray's storage)."""
    for attempt, delay in enumerate(tuple(RETRY_DELAYS) + (None,), start=1):
        try:
            return fn(*args)
        except Exception as e:
            if delay is None or not transient(e):
                raise
            log.warning("store: %s %s failed (%s); retry %d/%d in %.0fs", action, url,
                        _first_line(e), attempt, len(RETRY_DELAYS), delay)
            time.sleep(delay)


def _before_commit(tmp_path: str, final_path: str) -> None:
    """Called between writing the temporary object and moving it onto its key.

    Does nothing; tests replace it to simulate a crash between write and commit.
    """


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` of ``obj`` (a state dict or any weights-only-loadable object) to
    bytes: what the store, the units and the checkpoints write."""
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def torch_from_bytes(data: bytes, url: str) -> Any:
    """``torch.load(..., weights_only=True)`` of bytes read from ``url`` (one line naming
    it when they do not load)."""
    import torch
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise StoreError(f"cannot read checkpoint {url}: {_first_line(e)}") from None


def split_url(url: str) -> tuple[str, str]:
    """``(protocol, path)`` of a store URL; plain paths are local (``file``)."""
    url = os.fspath(url).strip()
    if not url:
        raise StoreError("store URL is empty; give a folder, file:///path or s3://bucket/prefix")
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", url)
    if not m:
        return "file", os.path.abspath(os.path.expanduser(url))
    proto, rest = m.group(1).lower(), m.group(2)
    if proto == "file":
        if not rest.startswith("/"):
            raise StoreError(f"store URL {url!r}: file URLs need an absolute path (file:///...)")
        return "file", os.path.abspath(rest)
    if proto in ("s3", "s3a"):
        rest = rest.strip("/")
        if not rest:
            raise StoreError(f"store URL {url!r} names no bucket (expected s3://bucket/prefix)")
        return "s3", rest
    raise StoreError(f"store URL {url!r}: unsupported scheme {proto!r}; use a folder, "
                     "file:///path or s3://bucket/prefix")


def _check_key(key: str, allow_empty: bool = False) -> str:
    if not isinstance(key, str):
        raise StoreError(f"store key must be a string, got {key!r}")
    key = key.strip("/")
    if not key:
        if allow_empty:
            return ""
        raise StoreError("store key is empty")
    parts = key.split("/")
    for p in parts:
        if p in ("", ".", ".."):
            raise StoreError(f"store key {key!r} has an empty, '.' or '..' segment")
    if _TEMP_RE.search(key):
        raise StoreError(f"store key {key!r} looks like a temporary key (*.tmp-<hex>)")
    return key


def _s3_filesystem(endpoint_url: Optional[str], options: dict):
    try:
        import s3fs
    except ImportError:
        raise StoreError("s3:// stores need the s3fs package (pip install s3fs)") from None
    endpoint = (endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                or os.environ.get("AWS_ENDPOINT_URL") or None)
    client_kwargs = {}
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    # No listings cache: a reader must see an object as soon as its writer committed it.
    kw = {"use_listings_cache": False, "skip_instance_cache": True, **options}
    kw["client_kwargs"] = {**client_kwargs, **options.get("client_kwargs", {})}
    return s3fs.S3FileSystem(**kw), endpoint


class Store:
    """Objects under one root URL, addressed by '/'-separated keys."""

    def __init__(self, fs, protocol: str, root: str, endpoint_url: Optional[str] = None):
        self.fs = fs
        self.protocol = protocol
        self.root = root.rstrip("/") if protocol == "s3" else root
        self.endpoint_url = endpoint_url

    # ------------------------------------------------------------------ naming
    def __repr__(self) -> str:
        return f"Store({self.url()!r})"

    def _path(self, key: str, allow_empty: bool = False) -> str:
        key = _check_key(key, allow_empty)
        if not key:
            return self.root
        return f"{self.root}/{key}" if self.protocol == "s3" else os.path.join(self.root, key)

    def url(self, key: str = "") -> str:
        """The URL of ``key`` (or of the root), without credentials."""
        path = self._path(key, allow_empty=True)
        return f"s3://{path}" if self.protocol == "s3" else f"file://{path}"

    def sub(self, prefix: str) -> "Store":
        """A store rooted at ``prefix`` inside this one."""
        return Store(self.fs, self.protocol, self._path(prefix), self.endpoint_url)

    def run(self, run_id: str) -> "Store":
        """The store of one run: ``runs/<run_id>/``."""
        if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
            raise StoreError(f"run id {run_id!r} must be 1-128 letters, digits or ._=+- "
                             "(starting with a letter or digit)")
        return self.sub(f"runs/{run_id}")

    def _rel(self, path: str) -> str:
        path = path.rstrip("/")
        root = self.root.rstrip("/")
        if self.protocol == "file":
            return os.path.relpath(path, root).replace(os.sep, "/")
        return path[len(root) + 1:] if path.startswith(root + "/") else path

    def _retrying(self, action: str, key: str, fn, *args):
        """``fn(*args)``, retried on transient S3 errors (see :data:`RETRY_DELAYS`)."""
        if self.protocol != "s3":
            return fn(*args)
        return retrying(action, self._url_unchecked(key), fn, *args)

    def pyarrow_fs(self):
        """This store's filesystem for pyarrow users (Ray Train's and Tune's storage):
        on S3 every call is retried like the store's own (:func:`retrying`), so an S3
        outage shorter than the retry budget does not fail a checkpoint or the experiment
        state. Carries no credentials (it is pickled into Ray's processes)."""
        import pyarrow.fs as pafs
        if self.protocol != "s3":
            return pafs.LocalFileSystem()
        from .storefs import RetryingFSSpecHandler
        return pafs.PyFileSystem(RetryingFSSpecHandler(self.fs))

    def _wrap(self, action: str, key: str, e: BaseException) -> StoreError:
        if isinstance(e, StoreError):
            return e
        if isinstance(e, FileNotFoundError):
            return StoreError(f"not found in store: {self.url(key)}")
        where = f" (endpoint {self.endpoint_url})" if self.endpoint_url else ""
        return StoreError(f"cannot {action} {self.url(key)}{where}: {_first_line(e)}")

    # ------------------------------------------------------------------ bytes
    def write_bytes(self, key: str, data: bytes) -> str:
        """Write ``data`` to ``key`` atomically; returns the object's URL."""
        final = self._path(key)
        tmp = f"{final}.tmp-{uuid.uuid4().hex}"
        try:
            if self.protocol == "file":
                os.makedirs(os.path.dirname(final), exist_ok=True)
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            else:
                self._retrying("write", key, self.fs.pipe_file, tmp, bytes(data))
            self._commit(tmp, final)
        except Exception as e:
            self._discard(tmp)
            raise self._wrap("write", key, e) from None
        return self.url(key)

    def put_file(self, key: str, local_path) -> str:
        """Upload a local file to ``key`` atomically."""
        local_path = os.fspath(local_path)
        if not os.path.isfile(local_path):
            raise StoreError(f"cannot upload {local_path}: not a file")
        final = self._path(key)
        tmp = f"{final}.tmp-{uuid.uuid4().hex}"
        try:
            if self.protocol == "file":
                os.makedirs(os.path.dirname(final), exist_ok=True)
            self._retrying("write", key, self.fs.put_file, local_path, tmp)
            self._commit(tmp, final)
        except Exception as e:
            self._discard(tmp)
            raise self._wrap("write", key, e) from None
        return self.url(key)

    def _commit(self, tmp: str, final: str) -> None:
        _before_commit(tmp, final)
        if self.protocol == "file":
            os.replace(tmp, final)
        else:
            # copy + delete of exactly these keys: fs.mv expands glob characters ('[', '*',
            # '?') in the source key and fails on a key holding them
            key = self._rel(final)
            self._retrying("write", key, self.fs.cp_file, tmp, final)
            self._retrying("write", key, self.fs.rm_file, tmp)

    def _discard(self, tmp: str) -> None:
        try:
            if self.protocol == "file":
                if os.path.exists(tmp):
                    os.remove(tmp)
            elif self.fs.exists(tmp):
                self.fs.rm_file(tmp)
        except Exception:
            pass

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            if self.protocol == "file":
                if not os.path.isfile(path):
                    raise FileNotFoundError(path)
                with open(path, "rb") as f:
                    return f.read()
            return self._retrying("read", key, self.fs.cat_file, path)
        except Exception as e:
            raise self._wrap("read", key, e) from None

    def get_file(self, key: str, local_path) -> str:
        """Download ``key`` to ``local_path`` (written atomically); returns the local path."""
        data = self.read_bytes(key)
        _write_local_atomic(os.fspath(local_path), data)
        return os.fspath(local_path)

    # ------------------------------------------------------------------ listing
    def exists(self, key: str) -> bool:
        """Whether an object (or a prefix holding objects) exists at ``key``."""
        path = self._path(key)
        try:
            if self.protocol == "file":
                return os.path.isfile(path) or (os.path.isdir(path) and bool(self.ls(key)))
            if self._retrying("check", key, self.fs.isfile, path):
                return True
            return bool(self.ls(key))
        except StoreError:
            raise
        except Exception as e:
            raise self._wrap("check", key, e) from None

    def ls(self, prefix: str = "") -> list[str]:
        """Sorted keys of all committed objects under ``prefix`` (recursively)."""
        path = self._path(prefix, allow_empty=True)
        try:
            if self.protocol == "file":
                if os.path.isfile(path):
                    found = [path]
                elif os.path.isdir(path):
                    found = [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs]
                else:
                    found = []
            else:
                found = self._find(prefix, path)
        except Exception as e:
            raise self._wrap("list", prefix, e) from None
        keys = [self._rel(p) for p in found]
        return sorted(k for k in keys if not _TEMP_RE.search(k))

    def _find(self, prefix: str, path: str) -> list[str]:
        """Object paths under ``path`` on S3, without "folder" markers: the zero-byte
        ``name/`` objects that the S3 console and sync tools create hold nothing."""
        if not path:
            return []
        found = self._retrying("list", prefix, self.fs.find, path, None, False, True)
        return [name for name, info in found.items()
                if not (name.endswith("/") and not info.get("size"))]

    def temp_keys(self, prefix: str = "") -> list[str]:
        """Temporary keys left behind by interrupted writes."""
        path = self._path(prefix, allow_empty=True)
        if self.protocol == "file":
            found = ([os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs]
                     if os.path.isdir(path) else [])
        else:
            found = self._find(prefix, path)
        return sorted(k for k in (self._rel(p) for p in found) if _TEMP_RE.search(k))

    def clean_temp(self, prefix: str = "", older_than: Optional[float] = None) -> int:
        """Remove temporary keys left by interrupted writes (with ``older_than``, a Unix
        time: only those last written before it); returns how many."""
        keys = self.temp_keys(prefix)
        if older_than is not None:
            keys = [k for k in keys if self._mtime(k) < older_than]
        for k in keys:
            self._discard(f"{self.root}/{k}" if self.protocol == "s3"
                          else os.path.join(self.root, k))
        return len(keys)

    def _mtime(self, rel: str) -> float:
        """Last-modified time (Unix seconds) of an object, inf when it cannot be read."""
        try:
            if self.protocol == "file":
                return os.path.getmtime(self._path_unchecked(rel))
            info = self.fs.info(self._path_unchecked(rel))
            stamp = info.get("LastModified") or info.get("mtime")
            return stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
        except Exception:
            return float("inf")

    # ------------------------------------------------------------------ units
    def commit_unit(self, prefix: str, files: Mapping[str, bytes]) -> dict:
        """Write a multi-file artifact (``{name: bytes or a JSON-able object}``) as a
        unit under ``prefix``: the old manifest is
        removed first (from then on the unit reads as incomplete), each file is written
        atomically, and ``<prefix>/MANIFEST.json`` (names, sizes, sha256) is written last.
        Readers trust only the manifest (:meth:`read_unit`). Returns the manifest."""
        import hashlib
        prefix = _check_key(prefix)
        names = [_check_key(n) for n in files]
        if MANIFEST in names:
            raise StoreError(f"{self.url(prefix)}: {MANIFEST} is written by commit_unit")
        if self.exists(f"{prefix}/{MANIFEST}"):
            self.rm(f"{prefix}/{MANIFEST}")
        entries = {}
        for name, data in files.items():
            if not isinstance(data, (bytes, bytearray, memoryview)):      # a JSON document
                data = (json.dumps(data, indent=2, sort_keys=True, default=_json_default)
                        + "\n").encode()
            data = bytes(data)
            self.write_bytes(f"{prefix}/{name}", data)
            entries[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        manifest = {"files": entries, "committed_at": time.time()}
        self.put_json(f"{prefix}/{MANIFEST}", manifest)
        return manifest

    def update_unit_file(self, prefix: str, name: str, data) -> dict:
        """Rewrite one file of the committed unit at ``prefix`` (e.g. a model card gaining
        a figure) and its manifest entry: the manifest is removed first and written last,
        as :meth:`commit_unit` does, so a reader never pairs the new file with an old hash.
        Returns the new manifest; raises StoreError when there is no committed unit."""
        import hashlib
        prefix, name = _check_key(prefix), _check_key(name)
        manifest = self.read_unit(prefix)
        if manifest is None or name not in manifest.get("files", {}):
            raise StoreError(f"{self.url(prefix)}: no committed unit holding {name}")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = (json.dumps(data, indent=2, sort_keys=True, default=_json_default)
                    + "\n").encode()
        data = bytes(data)
        self.rm(f"{prefix}/{MANIFEST}")
        self.write_bytes(f"{prefix}/{name}", data)
        manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        manifest["committed_at"] = time.time()
        self.put_json(f"{prefix}/{MANIFEST}", manifest)
        return manifest

    def read_unit(self, prefix: str) -> Optional[dict]:
        """The manifest of the unit at ``prefix``, or None while there is none (never
        committed, or being rewritten)."""
        key = f"{_check_key(prefix)}/{MANIFEST}"
        return self.get_json(key) if self.exists(key) else None

    def read_unit_file(self, prefix: str, name: str, manifest: dict) -> bytes:
        """A file of a committed unit, checked against the manifest's size and hash."""
        import hashlib
        entry = manifest.get("files", {}).get(name)
        if entry is None:
            raise StoreError(f"{self.url(prefix + '/' + MANIFEST)} does not list {name!r}")
        data = self.read_bytes(f"{prefix}/{name}")
        if len(data) != entry.get("size") or \
                hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise StoreError(f"{self.url(prefix + '/' + name)} does not match "
                             f"{MANIFEST} (rewritten after the unit was committed?)")
        return data

    def rm(self, key: str, recursive: bool = False) -> None:
        """Remove ``key`` (and, with ``recursive``, everything under it)."""
        path = self._path(key, allow_empty=recursive)
        try:
            if recursive:
                for k in self.ls(key) + self.temp_keys(key):
                    p = self._path_unchecked(k)
                    if self.protocol == "file":
                        os.remove(p)
                    else:
                        self.fs.rm_file(p)
                return
            if self.protocol == "file":
                if not os.path.isfile(path):
                    raise FileNotFoundError(path)
                os.remove(path)
            else:
                if not self.fs.isfile(path):
                    raise FileNotFoundError(path)
                self.fs.rm_file(path)
        except Exception as e:
            raise self._wrap("remove", key, e) from None

    def _path_unchecked(self, rel: str) -> str:
        return f"{self.root}/{rel}" if self.protocol == "s3" else os.path.join(self.root, rel)

    def _url_unchecked(self, rel: str) -> str:
        p = self._path_unchecked(rel)
        return f"s3://{p}" if self.protocol == "s3" else f"file://{p}"

    def download(self, prefix: str, local_dir) -> list[str]:
        """Copy every object under ``prefix`` into ``local_dir``; returns local paths.

        Refuses keys that would land outside ``local_dir``.
        """
        local_dir = os.path.abspath(os.fspath(local_dir))
        keys = self.ls(prefix)
        if not keys:
            raise StoreError(f"nothing to download: no objects under {self.url(prefix)}")
        base = _check_key(prefix, allow_empty=True)
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
            _write_local_atomic(dest, self.read_bytes(k))
            out.append(dest)
        return out

    # ------------------------------------------------------------------ formats
    def put_json(self, key: str, obj: Any) -> str:
        try:
            text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default)
        except (TypeError, ValueError) as e:
            raise StoreError(f"cannot write {self.url(key)} as JSON: {_first_line(e)}") from None
        return self.write_bytes(key, (text + "\n").encode())

    def get_json(self, key: str) -> Any:
        data = self.read_bytes(key)
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise StoreError(f"{self.url(key)} is not valid JSON: {_first_line(e)}") from None

    def put_npz(self, key: str, arrays: Optional[Mapping[str, Any]] = None, **more) -> str:
        import numpy as np
        arrays = {**(arrays or {}), **more}
        if not arrays:
            raise StoreError(f"cannot write {self.url(key)}: no arrays given")
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        return self.write_bytes(key, buf.getvalue())

    def get_npz(self, key: str) -> dict:
        import numpy as np
        data = self.read_bytes(key)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as e:
            raise StoreError(f"{self.url(key)} is not a readable .npz: {_first_line(e)}") from None

    def put_parquet(self, key: str, rows) -> str:
        """Write a pyarrow Table, a list of row dicts or a dict of columns as Parquet."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        try:
            if isinstance(rows, pa.Table):
                table = rows
            elif isinstance(rows, Mapping):
                table = pa.table(dict(rows))
            else:
                rows = list(rows)
                if not rows:
                    raise StoreError(f"cannot write {self.url(key)}: no rows given")
                table = pa.Table.from_pylist(rows)
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise StoreError(f"cannot write {self.url(key)} as Parquet: {_first_line(e)}") \
                from None
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return self.write_bytes(key, buf.getvalue())

    def get_parquet(self, key: str):
        """The pyarrow Table at ``key``."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        data = self.read_bytes(key)
        try:
            return pq.read_table(pa.BufferReader(data))
        except Exception as e:
            raise StoreError(f"{self.url(key)} is not a readable Parquet file: "
                             f"{_first_line(e)}") from None

    def put_torch(self, key: str, obj: Any) -> str:
        """``torch.save`` of a state dict (or any weights-only-loadable object)."""
        return self.write_bytes(key, torch_bytes(obj))

    def get_torch(self, key: str) -> Any:
        """``torch.load(..., weights_only=True)`` of ``key``: tensors, numbers, containers."""
        return torch_from_bytes(self.read_bytes(key), self.url(key))

    def get_state_dict(self, key: str) -> dict:
        """A state dict of tensors at ``key`` (through ``ganc.weights.read_state_dict``)."""
        from .weights import read_state_dict
        return read_state_dict(self.read_bytes(key), name=self.url(key))


def _json_default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"object of type {type(o).__name__} is not JSON serializable")


def _write_local_atomic(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def open_store(url, endpoint_url: Optional[str] = None, **s3_options) -> Store:
    """A store at ``url``: a folder path, ``file:///abs/path`` or ``s3://bucket/prefix``.

    ``s3_options`` go to ``s3fs.S3FileSystem`` (e.g. ``retries``).
    """
    if isinstance(url, Store):
        return url
    protocol, path = split_url(url)
    if protocol == "file":
        from fsspec.implementations.local import LocalFileSystem
        if os.path.exists(path) and not os.path.isdir(path):
            raise StoreError(f"store path {path} exists and is not a folder")
        return Store(LocalFileSystem(), "file", path)
    fs, endpoint = _s3_filesystem(endpoint_url or None, s3_options)
    return Store(fs, "s3", path, endpoint)


def store_from_config(cfg) -> Store:
    """The store of a ``StoreConfig`` (``url`` and ``endpoint_url``)."""
    return open_store(cfg.url, endpoint_url=getattr(cfg, "endpoint_url", "") or None)

