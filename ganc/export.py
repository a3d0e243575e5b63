"""Export the chosen sub-network of a run.

``export_best(cfg, store)`` writes under ``runs/<id>/export/``:

- ``model.pt``: a plain ``sub_mobile_resnet_9blocks`` state dict (loads strictly with
  ``ganc.weights`` / ``torch.load(weights_only=True)``);
- ``model.onnx``: ONNX (opset :data:`ganc.deploy.OPSET`, dynamic batch, height and width),
  checked against the eager model through onnxruntime;
- ``model.pt2``: the ``torch.export`` program (``torch.export.load``), which replaces the
  deprecated TorchScript export;
- ``model.json``: the model card (written last): ``netG``, ``config_str``, ``norm``,
  ``input_nc``, ``output_nc`` (so ``ganc translate --weights export/model.pt`` needs no
  other option), MACs, params, FID before / after fine-tune, latency per runtime and
  thread count with the machine it was measured on, the ONNX check, teacher, dataset and
  ganc version.

Listing runs and pulling a run's export: :mod:`ganc.runs`.
"""
from __future__ import annotations

import time
from typing import Optional

from . import __version__
from .config import RunConfig, train_crop
from .context import stage_context
from .data.splits import calibration_labels, choice_split, image_hw
from .deployfiles import write_deploy_files
from .errors import GancError
from .families import family_of
from .profile import count_macs, count_params, measure_latency
from .space import ChannelConfig
from .store import torch_bytes
from .subnets import chosen_config, cost_model, input_shape, load_supernet, subnet_from
from .train.supernet import load_teacher

EXPORT = "export"
EXPORT_FILES = ("model.pt", "model.onnx", "model.pt2", "model.json")
FINETUNE = "finetune"            # the upstream stage whose chosen weights are exported


def export_best(cfg: RunConfig, store=None, *, config: Optional[str] = None,
                latency_repeats: int = 10, ctx=None) -> dict:
    """Export the chosen sub-network: the fine-tuned weights when the fine-tune stage chose
    them (lower FID on the search split than the supernet's slice), else the supernet's
    slice; returns the card (``exported``, ``export_why``, ``fid`` on ``fid_split``).
    ``ctx``: the pipeline's run context, else one is opened."""

    # the run's placement (same eval size as search) and its lease, released at the end
    with stage_context(cfg, store, ray=False, ctx=ctx) as ctx:
        return _export(ctx, config, latency_repeats)


def _export(ctx, config: Optional[str], latency_repeats: int) -> dict:
    """The body of :func:`export_best` in an opened run context."""
    cfg, run = ctx.cfg, ctx.run
    cfg_str = chosen_config(run, config)
    sup = load_supernet(run)
    sup["space"].validate(cfg_str)
    ft, key, finetuned = _chosen_weights(run, cfg_str)
    size = int(cfg.data.crop_size)
    cost = cost_model(sup, size, image_hw(cfg.data)[0])
    shape = input_shape(cost)
    net, calibrated = _exported_net(ctx, sup, key, cfg_str)
    macs = count_macs(net, shape)
    if macs != cost.macs(cfg_str):     # closed form and profiler must agree
        raise GancError(f"MACs of {cfg_str}: profiler {macs} != closed form "
                        f"{cost.macs(cfg_str)}")
    best = run.get_json("best.json") if run.exists("best.json") else {}
    lat = measure_latency(net, shape, warmup=2, repeats=latency_repeats, device="cpu")
    teacher = _teacher_card(ctx, sup, dict(best.get("teacher") or {}), shape,
                            latency_repeats)
    files, deploy = _model_files(run, net, sup, cost, size, latency_repeats)
    card = {**_model_card(sup, cfg_str, cost, net, macs, shape, calibrated),
            **_scores(cfg, best, ft, finetuned, cfg_str),
            "latency_ms_cpu": lat["median_ms"], "latency_threads": lat["threads"],
            "teacher": teacher, "search_space": sup["space"].to_dict(),
            "dataset": _dataset(cfg, sup),
            "source": run.url(key), "run": run.url(), "ganc_version": __version__,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **_files_entry(sup), **deploy}
    files["model.json"] = card
    # one unit: weights, ONNX, torch.export and card, with export/MANIFEST.json last, so
    # `pull --best` never pairs new weights with an old card
    run.commit_unit(EXPORT, files)
    return card


def _chosen_weights(run, cfg_str: str) -> tuple[Optional[dict], str, bool]:
    """(the fine-tune's result for ``cfg_str`` or None, the weights' key, fine-tuned?)."""
    ft = run.get_json(f"{FINETUNE}/result.json") if run.exists(f"{FINETUNE}/result.json") \
        else None
    if ft and ft.get("config") != cfg_str:
        ft = None                              # a fine-tune of another config
    # the fine-tune stage chose the better of before / after on the search split
    if ft and ft.get("export", "after") == "after" and run.exists(f"{FINETUNE}/final.pt"):
        return ft, f"{FINETUNE}/final.pt", True
    return ft, "supernet/final.pt", False


def _exported_net(ctx, sup: dict, key: str, cfg_str: str):
    """(the sub-network to export, on CPU in eval mode; the calibration images or None)."""
    cfg = ctx.cfg
    net = subnet_from(ctx.run, key, cfg_str).cpu().eval()
    fam = family_of(sup["netG"])
    calibrated = None
    if fam.calibrates_bn and int(cfg.search.calibration_images) > 0:
        # exported with the batch-norm statistics it was scored with (ganc.metrics.pool)
        from .metrics.pool import recalibrated  # deferred: torchvision, torch_fidelity
        net = recalibrated(net, None, calibration_labels(cfg, ctx.data_root()), fam.input_nc)
        calibrated = int(cfg.search.calibration_images)
    return net, calibrated


def _teacher_card(ctx, sup: dict, teacher: dict, shape, latency_repeats: int) -> dict:
    """The search's teacher entry, with its MACs, params and CPU latency at ``shape``."""
    if not sup.get("teacher"):
        return teacher
    t = load_teacher(sup["teacher"], ctx.endpoint_url).cpu().eval()
    teacher.update({"netG": sup["teacher"].get("netG"), "ngf": sup["teacher"].get("ngf"),
                    "config_str": sup["teacher"].get("config_str"),
                    "macs": count_macs(t, shape), "params": count_params(t),
                    "latency_ms_cpu": measure_latency(t, shape, warmup=2,
                                                      repeats=latency_repeats,
                                                      device="cpu")["median_ms"]})
    return teacher


def _model_files(run, net, sup: dict, cost, size: int, latency_repeats: int
                 ) -> tuple[dict, dict]:
    """(the export unit's files but the card, the card's deploy part)."""
    fam = family_of(sup["netG"])
    sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    files = {"model.pt": torch_bytes(sd)}
    if not fam.supports_onnx:
        deploy = {"deploy": fam.deploy_note}
    else:
        deploy = write_deploy_files(run, EXPORT, net, cost.input_nc, size, latency_repeats,
                                    files=files)
    return files, deploy


def _model_card(sup: dict, cfg_str: str, cost, net, macs, shape, calibrated) -> dict:
    """The card's architecture part: what builds and feeds the exported generator."""
    arch = family_of(sup["netG"]).export_arch(calibrated)
    return {
        **arch, "config_str": cfg_str,
        "config": list(ChannelConfig.parse(cfg_str)), "ngf": int(sup["ngf"]),
        "norm": sup.get("norm", "instance"), "input_nc": cost.input_nc,
        "output_nc": cost.output_nc,
        "macs": macs, "params": count_params(net), "macs_convention": "torchprofile",
        "input_size": list(shape)}


def _scores(cfg: RunConfig, best: dict, ft: Optional[dict], finetuned: bool,
            cfg_str: str) -> dict:
    """The card's scores: FID (and mIoU) before / after fine-tune, and which was exported,
    each only where it was measured for ``cfg_str`` (else None, and ``scores_note`` says
    why): best.json's values are those of the configs the search chose, never another's."""
    why = (ft or {}).get("why") or "no fine-tune of this config: the supernet's slice"
    entry = _search_entry(best, cfg_str)
    searched = (entry or {}).get("fid")
    chosen_fid = (ft or {}).get("fid_after" if finetuned else "fid_before")
    note = None
    if entry is None:
        note = (f"fid_search not measured for this config: best.json scored "
                f"{best.get('config') or 'no config'}")
        if ft is None or chosen_fid is None:
            note = (f"not measured for this config: best.json scored "
                    f"{best.get('config') or 'no config'} and no fine-tune scored "
                    f"{cfg_str}")
    return {
        "fid_search": searched,
        "fid_split": best.get("fid_split") or choice_split(cfg.data),
        "fid_before_finetune": ft.get("fid_before") if ft else searched,
        "fid_after_finetune": ft.get("fid_after") if ft else None,
        "finetune_steps": ft.get("steps") if ft else 0, "finetuned": finetuned,
        "finetune_crop_size": ft.get("train_crop_size") if ft else None,
        "exported": "fine-tuned" if finetuned else "supernet slice", "export_why": why,
        "fid": chosen_fid if chosen_fid is not None else searched,
        "scores_note": note,
        **_miou_fields(best, entry, ft, finetuned)}


def _search_entry(best: dict, cfg_str: str) -> Optional[dict]:
    """The entry of best.json (the primary's, at the top, or one of ``budgets``) whose
    config is ``cfg_str``, or None: the search scored no config of that name as a best."""
    def same(c) -> bool:
        try:
            return c is not None and str(ChannelConfig.parse(c)) == cfg_str
        except (GancError, TypeError, ValueError):
            return False
    if same(best.get("config")):
        return best
    return next((e for e in best.get("budgets") or [] if isinstance(e, dict)
                 and same(e.get("config"))), None)


def _dataset(cfg: RunConfig, sup: dict) -> dict:
    """The dataset the supernet was trained on (its saved config), else this config's:
    its eval size and the side of the crops it trained on (``train_crop_size``)."""
    sup_cfg = sup.get("config") if isinstance(sup.get("config"), dict) else {}
    data = sup_cfg.get("data", {}) if sup_cfg else {}
    return {"kind": data.get("kind", cfg.data.kind),
            "root": data.get("root", cfg.data.root) or "generated demo data",
            "direction": data.get("direction", cfg.data.direction),
            "eval_split": data.get("eval_split", cfg.data.eval_split),
            "search_split": data.get("search_split", cfg.data.search_split),
            "crop_size": int(data.get("crop_size", cfg.data.crop_size)),
            "train_crop_size": int(data.get("train_crop_size") or data.get("crop_size")
                                   or train_crop(cfg.data))}


def _files_entry(sup: dict) -> dict:
    """The card's ``files``: what the export unit holds."""
    return {"files": family_of(sup["netG"]).export_files()}


def _miou_fields(best: dict, entry: Optional[dict], ft: Optional[dict],
                 finetuned: bool) -> dict:
    """The ESPNet-CamVid mIoU of the exported weights on the choice split (label-map data);
    ``entry``: best.json's entry of the exported config (None: not measured by the search)."""
    if best.get("miou") is None and not (ft or {}).get("miou_before"):
        return {}
    searched = (entry or {}).get("miou")
    chosen = (ft or {}).get("miou_after" if finetuned else "miou_before")
    return {"miou": chosen if chosen is not None else searched,
            "miou_search": searched, "miou_metric": "ESPNet-CamVid mIoU",
            "criterion": best.get("criterion", "fid")}


__all__ = ["export_best", "write_deploy_files", "EXPORT", "EXPORT_FILES"]
