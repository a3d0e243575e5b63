"""Export the chosen sub-network, list runs, and pull a run's best model from a store.

``export_best(cfg, store)`` writes under ``runs/<id>/export/``:

- ``model.pt``: a plain ``sub_mobile_resnet_9blocks`` state dict (loads strictly with
  ``ganc.weights`` / ``torch.load(weights_only=True)``);
- ``model.onnx``: ONNX (opset :data:`ganc.runtime.OPSET`, dynamic batch, height and width),
  checked against the eager model through onnxruntime;
- ``model.pt2``: the ``torch.export`` program (``torch.export.load``), which replaces the
  deprecated TorchScript export;
- ``model.json``: the model card (written last): ``netG``, ``config_str``, ``norm``,
  ``input_nc``, ``output_nc`` (so ``ganc translate --weights export/model.pt`` needs no
  other option), MACs, params, FID before / after fine-tune, latency per runtime and
  thread count with the machine it was measured on, the ONNX check, teacher, dataset and
  ganc version.

``pull(url, out_dir)`` downloads ``export/*`` and ``best.json`` of a run (or, with
``best=False``, everything under it), refusing any object key that would land outside
``out_dir`` before writing anything.
"""
from __future__ import annotations

import os
import posixpath
import time
import uuid
from typing import Optional

from . import __version__
from .config import RunConfig
from .errors import GancError
from .store import MANIFEST, torch_bytes
from .space import ChannelConfig

EXPORT = "export"
EXPORT_FILES = ("model.pt", "model.onnx", "model.pt2", "model.json")
LATENCY_THREADS = (1, 0)         # thread counts of the model card's latency (0: default)


class PullError(GancError):
    """A pull that would write outside its target folder, or found nothing to pull."""


# ---------------------------------------------------------------- export
def write_deploy_files(run, prefix: str, net, input_nc: int, size: int,
                       latency_repeats: int = 10, files: Optional[dict] = None) -> dict:
    """``<prefix>/model.onnx`` and ``<prefix>/model.pt2`` of a generator, each checked
    against the eager model, and its batch-1 latency on every runtime at 1 thread and
    the default thread count, with the machine; returns the model card's part. With
    ``files`` the bytes go there (for :meth:`Store.commit_unit`) instead of the store."""
    from .runtime import RUNTIMES, deploy_artifacts, latency_by_runtime, machine_info
    art = deploy_artifacts(net, input_nc, size)
    if files is not None:
        files.update({"model.onnx": art["onnx"], "model.pt2": art["pt2"]})
    else:
        run.write_bytes(f"{prefix}/model.onnx", art["onnx"])
        run.write_bytes(f"{prefix}/model.pt2", art["pt2"])
    latency = latency_by_runtime(net, input_nc, size, RUNTIMES, LATENCY_THREADS,
                                 rounds=latency_repeats, onnx=art["onnx"])
    return {**art["card"], "latency_ms": latency,
            "latency_setup": {"batch": 1, "input": [1, input_nc, size, size],
                              "statistic": f"median of {latency_repeats} alternating runs"},
            "machine": machine_info()}


def export_best(cfg: RunConfig, store=None, *, config: Optional[str] = None,
                latency_repeats: int = 10) -> dict:
    """Export the chosen sub-network: the fine-tuned weights when the fine-tune stage chose
    them (lower FID on the search split than the supernet's slice), else the supernet's
    slice; returns the card (``exported``, ``export_why``, ``fid`` on ``fid_split``)."""
    from .families import family_of              # deferred: torch
    from .context import open_context
    from .profile import count_macs, count_params, measure_latency
    from .search.driver import cost_model, input_shape, load_supernet
    from .data.splits import choice_split, image_hw
    from .search.finetune import STAGE, chosen_config, subnet_from

    ctx = open_context(cfg, store)            # the run's placement: same eval size as search
    cfg, run = ctx.cfg, ctx.run
    cfg_str = chosen_config(run, config)
    sup = load_supernet(run)
    sup["space"].validate(cfg_str)
    ft = run.get_json(f"{STAGE}/result.json") if run.exists(f"{STAGE}/result.json") else None
    if ft and ft.get("config") != cfg_str:
        ft = None                              # a fine-tune of another config
    # the fine-tune stage chose the better of before / after on the search split
    if ft and ft.get("export", "after") == "after" and run.exists(f"{STAGE}/final.pt"):
        key, finetuned = f"{STAGE}/final.pt", True
    else:
        key, finetuned = "supernet/final.pt", False
    why = (ft or {}).get("why") or "no fine-tune of this config: the supernet's slice"
    chosen_fid = (ft or {}).get("fid_after" if finetuned else "fid_before")
    net = subnet_from(run, key, cfg_str).cpu().eval()
    fam = family_of(sup["netG"])
    size = int(cfg.data.crop_size)
    cost = cost_model(sup, size, image_hw(cfg.data)[0])
    shape = input_shape(cost)
    calibrated = None
    if fam.calibrates_bn and int(cfg.search.calibration_images) > 0:
        # exported with the batch-norm statistics it was scored with (ganc.metrics.pool)
        from .data.splits import calibration_labels
        from .metrics.pool import recalibrated
        net = recalibrated(net, None, calibration_labels(cfg, ctx.data_root()), fam.input_nc)
        calibrated = int(cfg.search.calibration_images)
    macs = count_macs(net, shape)
    if macs != cost.macs(cfg_str):     # closed form and profiler must agree
        raise GancError(f"MACs of {cfg_str}: profiler {macs} != closed form "
                        f"{cost.macs(cfg_str)}")
    best = run.get_json("best.json") if run.exists("best.json") else {}
    teacher = dict(best.get("teacher") or {})
    lat = measure_latency(net, shape, warmup=2, repeats=latency_repeats, device="cpu")
    if sup.get("teacher"):
        from .train.supernet import load_teacher
        t = load_teacher(sup["teacher"], ctx.endpoint_url).cpu().eval()
        teacher.update({"netG": sup["teacher"].get("netG"), "ngf": sup["teacher"].get("ngf"),
                        "config_str": sup["teacher"].get("config_str"),
                        "macs": count_macs(t, shape), "params": count_params(t),
                        "latency_ms_cpu": measure_latency(t, shape, warmup=2,
                                                          repeats=latency_repeats,
                                                          device="cpu")["median_ms"]})

    sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    files = {"model.pt": torch_bytes(sd)}
    if not fam.supports_onnx:
        deploy = {"deploy": fam.deploy_note}
    else:
        deploy = write_deploy_files(run, EXPORT, net, cost.input_nc, size, latency_repeats,
                                    files=files)

    sup_cfg = sup.get("config") if isinstance(sup.get("config"), dict) else {}
    data = sup_cfg.get("data", {}) if sup_cfg else {}
    arch = fam.export_arch(calibrated)
    card = {
        **arch, "config_str": cfg_str,
        "config": list(ChannelConfig.parse(cfg_str)), "ngf": int(sup["ngf"]),
        "norm": sup.get("norm", "instance"), "input_nc": cost.input_nc,
        "output_nc": cost.output_nc,
        "macs": macs, "params": count_params(net), "macs_convention": "torchprofile",
        "input_size": list(shape),
        "fid_search": best.get("fid"),
        "fid_split": best.get("fid_split") or choice_split(cfg.data),
        "fid_before_finetune": ft.get("fid_before") if ft else best.get("fid"),
        "fid_after_finetune": ft.get("fid_after") if ft else None,
        "finetune_steps": ft.get("steps") if ft else 0, "finetuned": finetuned,
        "exported": "fine-tuned" if finetuned else "supernet slice", "export_why": why,
        "fid": chosen_fid if chosen_fid is not None else best.get("fid"),
        **_miou_fields(best, ft, finetuned),
        "latency_ms_cpu": lat["median_ms"], "latency_threads": lat["threads"],
        "teacher": teacher, "search_space": sup["space"].to_dict(),
        "dataset": {"kind": data.get("kind", cfg.data.kind),
                    "root": data.get("root", cfg.data.root) or "generated demo data",
                    "direction": data.get("direction", cfg.data.direction),
                    "eval_split": data.get("eval_split", cfg.data.eval_split),
                    "search_split": data.get("search_split", cfg.data.search_split)},
        "source": run.url(key), "run": run.url(), "ganc_version": __version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": fam.export_files(),
        **deploy,
    }
    files["model.json"] = card
    # one unit: weights, ONNX, torch.export and card, with export/MANIFEST.json last, so
    # `pull --best` never pairs new weights with an old card
    run.commit_unit(EXPORT, files)
    return card


def _miou_fields(best: dict, ft: Optional[dict], finetuned: bool) -> dict:
    """The ESPNet-CamVid mIoU of the exported weights on the choice split (label-map data)."""
    if best.get("miou") is None and not (ft or {}).get("miou_before"):
        return {}
    chosen = (ft or {}).get("miou_after" if finetuned else "miou_before")
    return {"miou": chosen if chosen is not None else best.get("miou"),
            "miou_search": best.get("miou"), "miou_metric": "ESPNet-CamVid mIoU",
            "criterion": best.get("criterion", "fid")}


# ---------------------------------------------------------------- runs
def list_runs(store) -> list[dict]:
    """Runs of a store with their best FID / MACs (from best.json) and export state."""
    from .store import open_store
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
    from .store import open_store
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
    from .search.report import best_entry
    from .space import ChannelConfig
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


__all__ = ["export_best", "write_deploy_files", "list_runs", "pull", "PullError", "EXPORT", "EXPORT_FILES"]
