"""Filesystem access: bytes under one root on a local folder or S3, written atomically.

Writes are atomic: the bytes go to a temporary key ``<key>.tmp-<32 hex>`` first and are
then moved onto the final key, so a reader sees either the old object or the whole new
one, never half a file. Temporary keys left behind by a crash are hidden from
:meth:`ObjectFS.ls` and :meth:`ObjectFS.exists` and removed by :meth:`ObjectFS.clean_temp`.
S3 calls go through :func:`~ganc.store.retry.retrying`.
"""
from __future__ import annotations

import os
import posixpath
import uuid
from typing import Optional

from ..errors import one_line
from .keys import TEMP_RE, StoreError, check_key
from .retry import retrying


def _before_commit(tmp_path: str, final_path: str) -> None:
    """Called between writing the temporary object and moving it onto its key.

    Does nothing; tests replace it to simulate a crash between write and commit.
    """


def s3_filesystem(endpoint_url: Optional[str], options: dict):
    """``(s3fs.S3FileSystem, endpoint)``: endpoint from ``endpoint_url`` or the
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` environment, no listings cache.

    ganc's :func:`~.retry.retrying` is the one retry loop: s3fs and botocore try each call
    once (unless ``options`` or ``AWS_MAX_ATTEMPTS`` say otherwise). Their loops nested in
    ours made an unreachable endpoint take 1.5 minutes to report and one that accepts but
    never answers over half an hour (5 s3fs tries x 5 botocore attempts x a 15 s read
    timeout, for each of our 6 attempts); now about 35 s and 2 minutes."""
    try:
        import s3fs  # deferred: s3fs (and botocore) only for s3:// stores
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
    # s3fs's own attempts per call: an attribute of the filesystem, not an argument its
    # constructor takes (passed on, it failed every call with a TypeError)
    options = dict(options)
    retries = int(options.pop("retries", 1))
    # No listings cache: a reader must see an object as soon as its writer committed it.
    kw = {"use_listings_cache": False, "skip_instance_cache": True, **options}
    kw["client_kwargs"] = {**client_kwargs, **options.get("client_kwargs", {})}
    if not os.environ.get("AWS_MAX_ATTEMPTS"):
        kw["config_kwargs"] = {"retries": {"max_attempts": 1},
                               **options.get("config_kwargs", {})}
    fs = s3fs.S3FileSystem(**kw)
    fs.retries = retries
    return fs, endpoint


def write_local_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to the local file ``path`` through a temporary file."""
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


class ObjectFS:
    """Objects (bytes) under one root URL, addressed by '/'-separated keys."""

    def __init__(self, fs, protocol: str, root: str, endpoint_url: Optional[str] = None):
        self.fs = fs
        self.protocol = protocol
        self.root = root.rstrip("/") if protocol == "s3" else root
        self.endpoint_url = endpoint_url

    # ------------------------------------------------------------------ naming
    def _path(self, key: str, allow_empty: bool = False) -> str:
        key = check_key(key, allow_empty)
        if not key:
            return self.root
        return f"{self.root}/{key}" if self.protocol == "s3" else os.path.join(self.root, key)

    def url(self, key: str = "") -> str:
        """The URL of ``key`` (or of the root), without credentials."""
        path = self._path(key, allow_empty=True)
        return f"s3://{path}" if self.protocol == "s3" else f"file://{path}"

    def _rel(self, path: str) -> str:
        path = path.rstrip("/")
        root = self.root.rstrip("/")
        if self.protocol == "file":
            return os.path.relpath(path, root).replace(os.sep, "/")
        return path[len(root) + 1:] if path.startswith(root + "/") else path

    def _path_unchecked(self, rel: str) -> str:
        return f"{self.root}/{rel}" if self.protocol == "s3" else os.path.join(self.root, rel)

    def _url_unchecked(self, rel: str) -> str:
        p = self._path_unchecked(rel)
        return f"s3://{p}" if self.protocol == "s3" else f"file://{p}"

    def _retrying(self, action: str, key: str, fn, *args):
        """``fn(*args)``, retried on transient S3 errors (see :func:`retrying`)."""
        if self.protocol != "s3":
            return fn(*args)
        return retrying(action, self._url_unchecked(key), fn, *args)

    def _wrap(self, action: str, key: str, e: BaseException) -> StoreError:
        if isinstance(e, StoreError):
            return e
        if isinstance(e, FileNotFoundError):
            return StoreError(f"not found in store: {self.url(key)}")
        where = f" (endpoint {self.endpoint_url})" if self.endpoint_url else ""
        return StoreError(f"cannot {action} {self.url(key)}{where}: {one_line(e, limit=200)}")

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
        return sorted(k for k in keys if not TEMP_RE.search(k))

    def children(self, prefix: str = "") -> list[str]:
        """Sorted names directly under ``prefix`` (objects and "folders"); [] when there
        is nothing there. On S3 retried like every call, then one line naming the URL."""
        path = self._path(prefix, allow_empty=True)
        try:
            if self.protocol == "file":
                return sorted(os.listdir(path)) if os.path.isdir(path) else []
            if not path:
                return []
            found = self._retrying("list", prefix, self.fs.ls, path, False)
        except FileNotFoundError:
            return []
        except Exception as e:
            raise self._wrap("list", prefix, e) from None
        return sorted({posixpath.basename(str(p).rstrip("/")) for p in found} - {""})

    def _find(self, prefix: str, path: str) -> list[str]:
        """Object paths under ``path`` on S3, without "folder" markers: the zero-byte
        ``name/`` objects that the S3 console and sync tools create hold nothing."""
        if not path:
            return []
        found = self._retrying("list", prefix, self.fs.find, path, None, False, True)
        return [name for name, info in found.items()
                if not (name.endswith("/") and not info.get("size"))]

    # ------------------------------------------------------------------ leftovers
    def temp_keys(self, prefix: str = "") -> list[str]:
        """Temporary keys left behind by interrupted writes."""
        path = self._path(prefix, allow_empty=True)
        if self.protocol == "file":
            found = ([os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs]
                     if os.path.isdir(path) else [])
        else:
            try:
                found = self._find(prefix, path)
            except Exception as e:
                raise self._wrap("list", prefix, e) from None
        return sorted(k for k in (self._rel(p) for p in found) if TEMP_RE.search(k))

    def clean_temp(self, prefix: str = "", older_than: Optional[float] = None) -> int:
        """Remove temporary keys left by interrupted writes (with ``older_than``, a Unix
        time: only those last written before it); returns how many."""
        keys = self.temp_keys(prefix)
        if older_than is not None:
            keys = [k for k in keys if self._mtime(k) < older_than]
        for k in keys:
            self._discard(self._path_unchecked(k))
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

    # ------------------------------------------------------------------ access
    def check_access(self, write: bool) -> str:
        """That this store can be reached and (``write``) written, without writing a key:
        a local store's nearest existing folder must be a writable folder; on S3 the
        bucket is listed and (``write``) a temporary key written and removed at the root
        (hidden from listings like every temporary key). One line naming the URL and the
        cause otherwise; returns what was checked."""
        if self.protocol == "file":
            return self._check_local(write)
        bucket = self.root.split("/", 1)[0]
        try:
            self._retrying("list", "", self.fs.ls, bucket, False)
        except FileNotFoundError:
            raise StoreError(f"store {self.url()}: bucket {bucket!r} not found") from None
        except Exception as e:
            raise self._wrap("reach", "", e) from None
        if not write:
            return "reachable"
        probe = f"{self.root}/ganc-write-check.tmp-{uuid.uuid4().hex}"
        try:
            self._retrying("write", "", self.fs.pipe_file, probe, b"")
        except Exception as e:
            raise self._wrap("write to", "", e) from None
        self._discard(probe)
        return "reachable, writable"

    def _check_local(self, write: bool) -> str:
        path = self.root
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        if not os.path.isdir(path):
            raise StoreError(f"store {self.url()}: {path} is a file, not a folder")
        if write and not os.access(path, os.W_OK | os.X_OK):
            raise StoreError(f"store {self.url()}: folder {path} is not writable")
        return "writable" if write else "readable"
