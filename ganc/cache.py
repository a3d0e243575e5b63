"""The node-local cache folder: ``GANC_CACHE``, default ``~/.cache/ganc``.

Generated demo data, datasets copied from URLs, Inception weights and TensorBoard staging
live here, one cache per node (never shared between nodes)."""
from __future__ import annotations

import contextlib
import fcntl
import os

ENV = "GANC_CACHE"


def cache_dir() -> str:
    return os.path.expanduser(os.environ.get(ENV) or os.path.join("~", ".cache", "ganc"))


@contextlib.contextmanager
def file_lock(path: str):
    """An exclusive lock on ``path`` (created if needed) for processes of this node."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
