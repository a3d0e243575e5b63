"""Commit units: multi-file artifacts that readers trust only through their manifest.

A unit under ``prefix`` is committed by removing the old ``<prefix>/MANIFEST.json`` (from
then on the unit reads as incomplete), writing each file atomically (:class:`ObjectFS`
writes a temporary key, then moves it onto its key), and writing the manifest (names,
sizes, sha256) last.
"""
from __future__ import annotations

import hashlib
import time
from typing import Mapping, Optional

from .codecs import decode_json, encode_json, json_bytes
from .fs import ObjectFS
from .keys import StoreError, check_key

MANIFEST = "MANIFEST.json"     # written last by commit_unit: the unit is complete


def _as_bytes(data) -> bytes:
    """Bytes as they are; any other value as a JSON document."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        data = json_bytes(data)
    return bytes(data)


def _entry(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _put_manifest(objects: ObjectFS, prefix: str, manifest: dict) -> None:
    key = f"{prefix}/{MANIFEST}"
    objects.write_bytes(key, encode_json(manifest, objects.url(key)))


def commit_unit(objects: ObjectFS, prefix: str, files: Mapping[str, bytes]) -> dict:
    """Write ``files`` (``{name: bytes or a JSON-able object}``) as a unit under
    ``prefix``; returns the manifest."""
    prefix = check_key(prefix)
    names = [check_key(n) for n in files]
    if MANIFEST in names:
        raise StoreError(f"{objects.url(prefix)}: {MANIFEST} is written by commit_unit")
    if objects.exists(f"{prefix}/{MANIFEST}"):
        objects.rm(f"{prefix}/{MANIFEST}")
    entries = {}
    for name, data in files.items():
        data = _as_bytes(data)
        objects.write_bytes(f"{prefix}/{name}", data)
        entries[name] = _entry(data)
    manifest = {"files": entries, "committed_at": time.time()}
    _put_manifest(objects, prefix, manifest)
    return manifest


def update_unit_file(objects: ObjectFS, prefix: str, name: str, data) -> dict:
    """Rewrite one file of the committed unit at ``prefix`` and its manifest entry (the
    manifest removed first and written last); returns the new manifest."""
    prefix, name = check_key(prefix), check_key(name)
    manifest = read_unit(objects, prefix)
    if manifest is None or name not in manifest.get("files", {}):
        raise StoreError(f"{objects.url(prefix)}: no committed unit holding {name}")
    data = _as_bytes(data)
    objects.rm(f"{prefix}/{MANIFEST}")
    objects.write_bytes(f"{prefix}/{name}", data)
    manifest["files"][name] = _entry(data)
    manifest["committed_at"] = time.time()
    _put_manifest(objects, prefix, manifest)
    return manifest


def read_unit(objects: ObjectFS, prefix: str) -> Optional[dict]:
    """The manifest of the unit at ``prefix``, or None while there is none."""
    key = f"{check_key(prefix)}/{MANIFEST}"
    if not objects.exists(key):
        return None
    return check_manifest(decode_json(objects.read_bytes(key), objects.url(key)),
                          objects.url(key))


def check_manifest(manifest, url: str) -> dict:
    """``manifest`` when it is one :func:`commit_unit` could have written: ``files`` maps
    plain names (store keys, never '..', never the manifest) to their size and sha256;
    else one line naming ``url`` and what is wrong (a manifest is not trusted)."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise StoreError(f"{url}: not a unit manifest (expected an object with 'files')")
    for name, entry in files.items():
        try:
            ok = check_key(name) == name and name != MANIFEST
        except StoreError:
            ok = False
        if not ok:
            raise StoreError(f"{url}: file name {name[:80]!r} is not a plain key of the unit")
        size = entry.get("size") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not (type(size) is int and size >= 0 and isinstance(digest, str)
                and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise StoreError(f"{url}: the entry of {name!r} needs a size and a sha256")
    return manifest


def check_unit_file(url: str, name: str, data: bytes, manifest: dict) -> bytes:
    """``data`` (the unit file ``name``, read from ``url``) when it matches the manifest's
    size and hash."""
    entry = manifest.get("files", {}).get(name)
    if entry is None:
        raise StoreError(f"the manifest of {url} does not list {name!r}")
    if len(data) != entry.get("size") or \
            hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise StoreError(f"{url} does not match "
                         f"{MANIFEST} (rewritten after the unit was committed?)")
    return data


def read_unit_file(objects: ObjectFS, prefix: str, name: str, manifest: dict) -> bytes:
    """A file of a committed unit, checked against the manifest's size and hash."""
    if name not in manifest.get("files", {}):
        raise StoreError(f"{objects.url(prefix + '/' + MANIFEST)} does not list {name!r}")
    return check_unit_file(objects.url(f"{prefix}/{name}"),
                           name, objects.read_bytes(f"{prefix}/{name}"), manifest)
