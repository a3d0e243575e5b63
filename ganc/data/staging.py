"""Writing a generated dataset folder as a unit: everything goes into a temporary sibling
folder, which replaces the target only when all of it (and its description file) is
written; a failure leaves nothing behind."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

from ..errors import ConfigError


def check_empty_target(out, flag: str = "") -> str:
    """``out`` as a path, refused in one line when it holds files."""
    out = os.fspath(out)
    if os.path.isdir(out) and os.listdir(out):
        raise ConfigError(f"{flag + ' ' if flag else ''}{out} exists and is not empty")
    return out


@contextlib.contextmanager
def staged_folder(out: str, info_name: str, info: dict, prefix: str):
    """Yield a temporary folder beside ``out``; when the block ends without an error,
    write ``info`` as ``info_name`` into it and move it into place at ``out`` (an empty
    ``out`` is replaced). On any error the temporary folder is removed."""
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield tmp
        with open(os.path.join(tmp, info_name), "w") as f:
            json.dump(info, f, indent=1)
        if os.path.isdir(out):
            os.rmdir(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["check_empty_target", "staged_folder"]
