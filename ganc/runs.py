"""The runs of a store, and pulling a run's best model from it.

The store is not trusted: whoever can write it may plant links, special files, keys with
'..' or documents that are not what ganc writes. ``list_runs(store)`` lists a store's runs
with their best FID / MACs (``best.json``) and whether they are exported; a run it cannot
read is listed as unreadable with the reason, never hiding the others. ``pull(url,
out_dir)`` downloads the files the export's manifest lists and ``best.json`` of a run (or,
with ``best=False``, every regular object under it); it never follows a link of a local
store and refuses a link, a special file or a key that would land outside ``out_dir``
before writing anything.
"""
from __future__ import annotations

import os
import uuid
from typing import Optional

from .errors import GancError
from .export import EXPORT
from .search.report import best_entry
from .space import ChannelConfig
from .store import MANIFEST, StoreError, open_store
from .store.codecs import decode_json
from .store.keys import TEMP_RE, check_key
from .store.local import read_regular, regular_files
from .store.units import check_manifest, check_unit_file


class PullError(GancError):
    """A pull that would write outside its target folder, or found nothing to pull."""


# ---------------------------------------------------------------- runs
NUMBERS = ("fid", "macs", "params", "teacher_fid", "teacher_macs")


def list_runs(store) -> list[dict]:
    """Runs of a store with their best FID / MACs (from best.json) and export state. A run
    whose best.json or export manifest cannot be read (corrupt, not what ganc writes, a
    link) is listed with ``unreadable``: the one-line reason; the others as usual."""
    st = open_store(store) if not hasattr(store, "ls") else store
    out = []
    for rid in st.children("runs"):
        try:
            run = st.run(rid)
        except GancError:
            continue
        row = {"run": rid, "url": run.url(), "best": None, "fid": None, "macs": None,
               "params": None, "teacher_fid": None, "teacher_macs": None,
               "exported": None, "unreadable": None}
        try:
            if run.protocol == "file" and os.path.islink(run.root):
                raise StoreError(f"{run.url()} is a symbolic link; ganc never follows links "
                                 "in a store")
            if not run.ls():             # nothing committed: only leftover temporary keys
                continue
            row.update(_run_row(run))
        except GancError as err:
            row["unreadable"] = (str(err).splitlines() or [type(err).__name__])[0]
        out.append(row)
    return out


def _run_row(run) -> dict:
    """best.json's fields and the export state of one run (read without following links);
    GancError naming the object that is not what ganc writes."""
    row = {"exported": _export_manifest(run) is not None}
    if run.exists("best.json"):
        url = run.url("best.json")
        b = decode_json(_read(run, "best.json"), url)
        t = b.get("teacher") if isinstance(b, dict) else None
        if not isinstance(b, dict) or not isinstance(t or {}, dict):
            raise StoreError(f"{url}: expected an object (with an object 'teacher')")
        t = t or {}
        row.update(best=b.get("config"), fid=b.get("fid"), macs=b.get("macs"),
                   params=b.get("params"), teacher_fid=t.get("fid"),
                   teacher_macs=t.get("macs"))
        if row["best"] is not None and not isinstance(row["best"], str):
            raise StoreError(f"{url}: config: expected a string, got {row['best']!r:.40}")
        for k in NUMBERS:
            v = row[k]
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise StoreError(f"{url}: {k.replace('teacher_', 'teacher.')}: expected a "
                                 f"number, got {v!r:.40}")
    return row


# ---------------------------------------------------------------- reading, untrusted
def _read(run, key: str) -> bytes:
    """Bytes of a run's object; in a local store never through a link, regular files only."""
    if run.protocol == "file":
        return read_regular(run.root, check_key(key), run.url(key))
    return run.read_bytes(key)


def _export_manifest(run) -> Optional[dict]:
    """The export unit's manifest (checked: plain names, sizes, hashes), or None."""
    key = f"{EXPORT}/{MANIFEST}"
    if not run.exists(key):
        return None
    return check_manifest(decode_json(_read(run, key), run.url(key)), run.url(key))


# ---------------------------------------------------------------- pull
def _safe_dest(out_dir: str, rel: str, url: str) -> str:
    parts = rel.replace("\\", "/").split("/")
    if (not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts)
            or ":" in parts[0]):
        raise PullError(f"refusing to pull {url}: key {rel!r} would be written outside "
                        f"{out_dir}")
    dest = os.path.normpath(os.path.join(out_dir, *parts))
    if os.path.commonpath([out_dir, dest]) != out_dir or dest == out_dir:
        raise PullError(f"refusing to pull {url}: key {rel!r} would be written outside "
                        f"{out_dir}")
    return dest


def _out_folder(out_dir) -> str:
    """``out_dir`` as an absolute path; refused when it exists and is not a folder."""
    given = os.fspath(out_dir)
    if os.path.lexists(given) and not os.path.isdir(given):
        raise PullError(f"cannot pull into {given}: it exists and is not a folder")
    return os.path.abspath(given)


def pull(url: str, out_dir, *, best: bool = True, endpoint_url: Optional[str] = None,
         budget: Optional[float] = None) -> list:
    """Download a run (``STORE/runs/<id>``): with ``best``, the files the export unit's
    manifest lists (flattened into ``out_dir``, each checked against it) and
    ``best.json``; else every regular object under the run. Never follows a link of a
    local store; refuses a link, a special file or a key that would land outside
    ``out_dir`` before writing anything. Returns local paths. ``budget``: the best of that
    search budget (best.json's ``budgets``; default: the primary), refused in one line
    unless the exported model is that budget's best."""
    out_dir = _out_folder(out_dir)
    run = open_store(url, endpoint_url=endpoint_url)
    base_url = run.url().rstrip("/") + "/"
    manifest = None
    if best:
        plan, manifest = _best_plan(run, budget)
    else:
        plan = [(k, k) for k in _all_keys(run)]
        if not plan:
            raise PullError(f"nothing to pull: no objects under {run.url()}")
    # Check every destination before writing anything.
    dests = [(k, _safe_dest(out_dir, rel, base_url + rel)) for k, rel in plan]
    if len({d for _, d in dests}) != len(dests):
        raise PullError(f"refusing to pull {run.url()}: two objects would be written to "
                        "the same file")
    for _, dest in dests:
        _check_free(out_dir, dest)
    if best:        # the export's files are small: read and check all, then write
        data = {k: _read_export_file(run, k, manifest) for k, _ in dests}
        return [_write(dest, data[k]) for k, dest in dests]
    return [_write(dest, _read(run, k)) for k, dest in dests]


def _best_plan(run, budget: Optional[float]) -> tuple[list, dict]:
    """((key, local name) of the export unit's files (its manifest, written last by
    `ganc export`, lists them) and best.json; the manifest)."""
    manifest = _export_manifest(run)
    missing = [k for k, ok in ((f"{EXPORT}/{MANIFEST}", manifest is not None),
                               ("best.json", run.exists("best.json"))) if not ok]
    if missing:
        raise PullError(f"nothing to pull: {run.url(missing[0])} not found "
                        "(run `ganc search` and `ganc export` first)")
    if budget is not None:
        _check_budget_export(run, budget, manifest)
    plan = [(f"{EXPORT}/{name}", name) for name in sorted(manifest["files"])]
    return plan + [("best.json", "best.json")], manifest


def _read_export_file(run, key: str, manifest: dict) -> bytes:
    """A pulled object; the export's files checked against its manifest."""
    data = _read(run, key)
    if not key.startswith(EXPORT + "/"):
        return data
    return check_unit_file(run.url(key), key[len(EXPORT) + 1:], data, manifest)


def _all_keys(run) -> list:
    """Keys of every regular object under the run (a local run's links and special files
    refused), temporary keys left out."""
    if run.protocol == "file":
        return regular_files(run.root, run.url())
    base = run.root.rstrip("/")
    keys = []
    for p in sorted(str(p) for p in run._find("", base)):
        rel = p[len(base) + 1:] if p.startswith(base + "/") else p
        if not TEMP_RE.search(rel):
            keys.append(rel)
    return keys


def _check_free(out_dir: str, dest: str) -> None:
    """``dest`` can be written: no file where a folder inside ``out_dir`` goes, no folder
    at ``dest`` (checked for every object before the first is written)."""
    d = os.path.dirname(dest)
    while len(d) > len(out_dir):
        if os.path.lexists(d) and not os.path.isdir(d):
            raise PullError(f"cannot write {dest}: {d} exists and is not a folder")
        d = os.path.dirname(d)
    if os.path.isdir(dest):
        raise PullError(f"cannot write {dest}: it is a folder")


def _write(dest: str, data: bytes) -> str:
    """Write ``data`` to the local file ``dest`` atomically; one line when it cannot."""
    tmp = f"{dest}.tmp-{uuid.uuid4().hex}"
    try:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except OSError as e:
        raise PullError(f"cannot write {dest}: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def _check_budget_export(run, budget: float, manifest: dict) -> None:
    """The exported model must be the best of ``budget`` (MACs as best.json records them)."""
    url = run.url("best.json")
    try:
        entry = best_entry(decode_json(_read(run, "best.json"), url), budget)
        want = list(ChannelConfig.parse(entry["config"]))
    except GancError as e:
        raise PullError(f"{url}: {e}") from None
    except (AttributeError, KeyError, TypeError, ValueError):   # not what ganc writes
        raise PullError(f"{url}: no budget entry with a config (not what ganc writes)") \
            from None
    card = decode_json(_read_export_file(run, f"{EXPORT}/model.json", manifest),
                       run.url(f"{EXPORT}/model.json"))
    exported = card.get("config") if isinstance(card, dict) else None
    if exported is not None and list(exported) != want:
        raise PullError(f"the export of {run.url()} is not the best of budget {budget:.4g} "
                        f"({entry['config']}); export it first: ganc export --subnet-config "
                        f"{entry['config']}")


__all__ = ["list_runs", "pull", "PullError"]
