"""Reading a local (``file://``) store without trusting it: never through a symbolic link,
only regular files (a planted FIFO or device is refused, not opened).

A store's writer may plant ``runs/<id>/export -> /home/user/.ssh`` or
``best.json -> /etc/passwd``; :func:`read_regular` opens every folder on the way and the
file itself relative to the one before with ``O_NOFOLLOW`` (no check-then-open race), and
:func:`regular_files` lists a folder's regular files, refusing any link or special file.
"""
from __future__ import annotations

import errno
import os
import stat

from .keys import TEMP_RE, StoreError

_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_DIR = _FLAGS | getattr(os, "O_DIRECTORY", 0)
_FILE = _FLAGS | getattr(os, "O_NONBLOCK", 0)      # a FIFO must not block the open
_LINK_ERRNOS = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)   # EMLINK: BSD's O_NOFOLLOW


def _refuse(url: str) -> StoreError:
    return StoreError(f"{url}: a symbolic link (or behind one) or not a regular file; ganc "
                      "never follows links or reads special files in a store")


def read_regular(root: str, key: str, url: str) -> bytes:
    """The bytes of the regular file ``root/key`` (``key`` '/'-separated, already checked),
    opened without following a link at ``root`` or below it."""
    parts = key.split("/")
    fds = []
    try:
        try:
            fds.append(os.open(root, _DIR))
            for p in parts[:-1]:
                fds.append(os.open(p, _DIR, dir_fd=fds[-1]))
            fds.append(os.open(parts[-1], _FILE, dir_fd=fds[-1]))
        except OSError as e:
            if not os.path.lexists(os.path.join(root, *parts)):
                raise StoreError(f"not found in store: {url}") from None
            if e.errno in _LINK_ERRNOS:  # a link at the file or on the way to it
                raise _refuse(url) from None
            raise
        fd = fds[-1]
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse(url)
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    except StoreError:
        raise
    except OSError as e:
        raise StoreError(f"cannot read {url}: {e.strerror or e}") from None
    finally:
        for fd in fds:
            os.close(fd)


def regular_files(root: str, url: str) -> list[str]:
    """Sorted '/'-separated keys of the regular files under the folder ``root`` (temporary
    keys left out); refuses ``root`` or anything below it that is a link or special file."""
    if os.path.islink(root):
        raise _refuse(url)
    if not os.path.isdir(root):
        return []
    out = []

    def walk(folder: str, rel: str) -> None:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            key = f"{rel}{e.name}"
            if e.is_dir(follow_symlinks=False):
                walk(e.path, key + "/")
            elif e.is_file(follow_symlinks=False):
                if not TEMP_RE.search(key):
                    out.append(key)
            else:
                raise _refuse(f"{url.rstrip('/')}/{key}")

    try:
        walk(root, "")
    except OSError as e:
        raise StoreError(f"cannot list {url}: {e.strerror or e}") from None
    return sorted(out)


__all__ = ["read_regular", "regular_files"]
