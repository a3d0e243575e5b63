"""The runs of a store, and pulling a run's best model from it.

``list_runs(store)`` lists a store's runs with their best FID / MACs (``best.json``) and
whether they are exported. ``pull(url, out_dir)`` downloads ``export/*`` and ``best.json``
of a run (or, with ``best=False``, everything under it), refusing any object key that would
land outside ``out_dir`` before writing anything.
"""
from __future__ import annotations

import os
import posixpath
import uuid
from typing import Optional

from .errors import GancError
from .export import EXPORT
from .search.report import best_entry
from .space import ChannelConfig
from .store import MANIFEST, open_store


class PullError(GancError):
    """A pull that would write outside its target folder, or found nothing to pull."""


# ---------------------------------------------------------------- runs
def list_runs(store) -> list[dict]:
    """Runs of a store with their best FID / MACs (from best.json) and export state."""
    st = open_store(store) if not hasattr(store, "ls") else store
    base = st._path("runs")
    try:
        entries = st.fs.ls(base, detail=False) if st.fs.exists(base) else []
    except FileNotFoundError:
        entries = []
    out = []
    for e in sorted(entries):
        rid = posixpath.basename(str(e).rstrip("/"))
        try:
            run = st.run(rid)
        except GancError:
            continue
        if not run.ls():                 # nothing committed: only leftover temporary keys
            continue
        row = {"run": rid, "url": run.url(), "best": None, "fid": None, "macs": None,
               "params": None, "teacher_fid": None, "teacher_macs": None,
               "exported": run.read_unit(EXPORT) is not None}
        if run.exists("best.json"):
            b = run.get_json("best.json")
            t = b.get("teacher") or {}
            row.update(best=b.get("config"), fid=b.get("fid"), macs=b.get("macs"),
                       params=b.get("params"), teacher_fid=t.get("fid"),
                       teacher_macs=t.get("macs"))
        out.append(row)
    return out


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


def pull(url: str, out_dir, *, best: bool = True, endpoint_url: Optional[str] = None,
         budget: Optional[float] = None) -> list:
    """Download a run (``STORE/runs/<id>``): with ``best``, ``export/*`` (flattened into
    ``out_dir``) and ``best.json``; else every object under the run. Returns local paths.
    ``budget``: the best of that search budget (best.json's ``budgets``; default: the
    primary), refused in one line unless the exported model is that budget's best."""
    run = open_store(url, endpoint_url=endpoint_url)
    out_dir = os.path.abspath(os.fspath(out_dir))
    manifest = None
    if best:
        # the export is what its manifest lists (written last by `ganc export`)
        manifest = run.read_unit(EXPORT)
        missing = [k for k, ok in ((f"{EXPORT}/{MANIFEST}", manifest is not None),
                                   ("best.json", run.exists("best.json"))) if not ok]
        if missing:
            raise PullError(f"nothing to pull: {run.url(missing[0])} not found "
                            "(run `ganc search` and `ganc export` first)")
        if budget is not None:
            _check_budget_export(run, budget)
        plan = [(f"{EXPORT}/{name}", name) for name in sorted(manifest["files"])]
        plan.append(("best.json", "best.json"))
    else:
        base = run.root.rstrip("/")
        found = run._find("", base) if run.protocol == "s3" else [
            os.path.join(r, f) for r, _, fs in os.walk(base) for f in fs]
        plan = []
        for p in sorted(found):
            p = str(p)
            rel = p[len(base) + 1:] if p.startswith(base + "/") else p
            if run.protocol == "file":
                rel = os.path.relpath(p, base).replace(os.sep, "/")
            if ".tmp-" in rel:
                continue
            plan.append((rel, rel))
        if not plan:
            raise PullError(f"nothing to pull: no objects under {run.url()}")
    # Check every destination before writing anything.
    dests = [(k, _safe_dest(out_dir, rel, run.url().rstrip("/") + "/" + rel))
             for k, rel in plan]
    out = []
    for key, dest in dests:
        if manifest is not None and key.startswith(EXPORT + "/"):
            data = run.read_unit_file(EXPORT, key[len(EXPORT) + 1:], manifest)
        else:
            data = _read_raw(run, key)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = f"{dest}.tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        out.append(dest)
    return out


def _check_budget_export(run, budget: float) -> None:
    """The exported model must be the best of ``budget`` (MACs as best.json records them)."""
    try:
        entry = best_entry(run.get_json("best.json"), budget)
    except GancError as e:
        raise PullError(f"{run.url('best.json')}: {e}") from None
    exported = run.get_json(f"{EXPORT}/model.json").get("config")
    want = list(ChannelConfig.parse(entry["config"]))
    if exported is not None and list(exported) != want:
        raise PullError(f"the export of {run.url()} is not the best of budget {budget:.4g} "
                        f"({entry['config']}); export it first: ganc export --subnet-config "
                        f"{entry['config']}")


def _read_raw(run, key: str) -> bytes:
    """Bytes of an object (keys are checked by the caller; may be unusual on S3)."""
    try:
        return run.read_bytes(key)
    except GancError:
        raise
    except Exception as e:  # pragma: no cover
        raise PullError(f"cannot read {key}: {e}") from None


__all__ = ["list_runs", "pull", "PullError"]
