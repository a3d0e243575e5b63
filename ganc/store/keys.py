"""Store naming: URLs, keys and run ids, and the store's one-line error (bottom layer)."""
from __future__ import annotations

import os
import re

from ..errors import GancError

TEMP_RE = re.compile(r"\.tmp-[0-9a-f]{32}$")     # a write's temporary key: <key>.tmp-<hex>
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,127}$")


class StoreError(GancError):
    """A missing object, an unreachable store or an invalid key, in one line."""


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


def check_key(key: str, allow_empty: bool = False) -> str:
    """``key`` without leading/trailing '/'; refuses empty, '.', '..' and temporary keys."""
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
    if TEMP_RE.search(key):
        raise StoreError(f"store key {key!r} looks like a temporary key (*.tmp-<hex>)")
    return key


def check_run_id(run_id: str) -> str:
    """``run_id`` when it is a valid run id (1-128 letters, digits or ._=+-)."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise StoreError(f"run id {run_id!r} must be 1-128 letters, digits or ._=+- "
                         "(starting with a letter or digit)")
    return run_id
