"""The run report: teacher vs the best of each method (MACs, params, FID, CPU latency),
the FID-vs-MACs plot, and a grid of input / teacher / compressed outputs, written to
``runs/<id>/report/``.

The report is the only stage that reads the eval split (val / test): every model of the
table is scored there (``fid``), beside the FID it was chosen by on the search split
(``fid_search``, from ``best.json`` / the model card; see :mod:`ganc.data.splits`). Both go
into ``best.json`` and ``export/model.json`` as ``fid_by_split``."""
from __future__ import annotations

import io
import math

from .config import RunConfig
from .errors import GancError

REPORT = "report"


def _latency(net, shape) -> float:
    from .profile import measure_latency  # deferred: torch
    return measure_latency(net.cpu().eval(), tuple(shape), warmup=2, repeats=5,
                           device="cpu")["median_ms"]


def input_shape(cfg: RunConfig, netG: str) -> tuple:
    """(1, C, H, W) of one input of generator ``netG`` at the run's size."""
    from .families import family_of       # deferred: torch
    return family_of(netG).input_shape(cfg.data)


def _load_export(run, prefix: str):
    """(card, generator) of an exported model folder in the run."""
    from .modelio import as_runnable, build_generator, spec_from_card  # deferred: torch
    from .weights import load_weights  # deferred: torch
    card = run.get_json(f"{prefix}/model.json")
    spec = spec_from_card(card)
    net = build_generator(spec)
    load_weights(net, run.read_bytes(f"{prefix}/model.pt"), arch=spec.label(),
                 name=run.url(f"{prefix}/model.pt"))
    return card, as_runnable(net, spec).eval()


def _finite(v):
    return v if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) \
        else None


def collect_rows(cfg: RunConfig, run, size: int) -> tuple[list[dict], dict]:
    """Summary rows and the models behind them (for the grid)."""
    from .profile import count_macs, count_params  # deferred: torch
    rows, models = [], {}
    best = run.get_json("best.json") if run.exists("best.json") else {}
    card = run.get_json("export/model.json") if run.exists("export/model.json") else {}
    if run.exists("supernet/final.pt"):
        from .train.supernet import load_teacher  # deferred: torch
        ref = run.get_torch("supernet/final.pt").get("teacher")  # no need to build the supernet
        if ref:
            teacher = load_teacher(ref, run.endpoint_url or cfg.store.endpoint_url).cpu().eval()
            t_info = best.get("teacher") or {}
            measured = (card.get("teacher") or {}).get("latency_ms_cpu")  # export timed it
            shape = input_shape(cfg, ref.get("netG"))
            width = ref.get("config_str") or f"ngf {ref.get('ngf')}"
            rows.append({"model": f"{ref.get('netG')} ({width})",
                         "method": "teacher", "macs": count_macs(teacher, shape),
                         "params": count_params(teacher),
                         "fid_search": _finite(t_info.get("fid")),
                         "miou_search": _finite(t_info.get("miou")),
                         "latency_ms_cpu": measured or _latency(teacher, shape)})
            models["teacher"] = teacher
    if run.exists("export/model.json"):
        card, net = _load_export(run, "export")
        method = (best.get("search") or {}).get("method", "evolution")
        rows.append({"model": f"sub {card['config_str']}", "method": method,
                     "macs": card["macs"], "params": card["params"],
                     "fid_search": _finite(card.get("fid", card.get("fid_search"))),
                     "miou_search": _finite(card.get("miou")),
                     "exported": card.get("exported"),
                     "latency_ms_cpu": card.get("latency_ms_cpu") or
                     _latency(net, input_shape(cfg, card["netG"])),
                     "source": run.url("export")})
        models[method] = net
    if run.exists("prune/summary.json"):
        prs = [r for r in run.get_json("prune/summary.json").get("rows", []) if r]
        if prs:
            r = min(prs, key=lambda r: _finite(r.get("fid")) if _finite(r.get("fid")) is not None
                    else float("inf"))
            prefix = r.get("prefix") or f"prune/p{float(r['target']):g}"
            if run.exists(f"{prefix}/model.json"):
                card, net = _load_export(run, prefix)
                shape = (1, 3, size, size)
                rows.append({"model": f"pruned p={float(r['target']):g}", "method": "prune-lds",
                             "macs": count_macs(net, shape),
                             "params": count_params(net), "fid_search": _finite(r.get("fid")),
                             "latency_ms_cpu": _latency(net, shape), "source": run.url(prefix)})
                models["prune-lds"] = net
    return rows, models


def score_on_eval_split(ctx, models: dict, report: bool = True) -> dict:
    """``{method: Score}`` of each model on the eval split (val / test; ``report=False``:
    on the search split), in-process: FID, KID (mean and std, with ``fid.kid``), and on
    label-map data the ESPNet-CamVid mIoU."""
    from .metrics.pool import LocalPool, SubnetSpec  # deferred: torch, torch_fidelity
    from .metrics.splits import scoring_split  # deferred: torch, torch_fidelity
    if not models:
        return {}
    pool = LocalPool(scoring_split(ctx.cfg, ctx.data_root(), ctx.data.name, report=report),
                     store=ctx.root, fid=ctx.cfg.fid)
    for name, net in models.items():
        pool.register_model(name, net)
    scores = pool.score([SubnetSpec(name) for name in models])
    return dict(zip(models, scores))


def record_fid_by_split(run, rows: list[dict], split: str, search_split: str) -> None:
    """``fid_by_split`` ({search split: FID it was chosen by, eval split: FID}) of the
    searched model and its teacher into ``best.json`` and ``export/model.json``."""
    by = {r["method"]: {search_split: r.get("fid_search"), split: r.get("fid")} for r in rows}
    for key in ("best.json", "export/model.json"):
        if not run.exists(key):
            continue
        doc = run.get_json(key)
        sub = next((v for m, v in by.items() if m not in ("teacher", "prune-lds")), None)
        if sub is not None:
            doc["fid_by_split"] = sub
        if "teacher" in by and isinstance(doc.get("teacher"), dict):
            doc["teacher"]["fid_by_split"] = by["teacher"]
        if key.startswith("export/") and run.read_unit("export") is not None:
            run.update_unit_file("export", "model.json", doc)    # keeps the manifest true
        else:
            run.put_json(key, doc)


def grid_png(inputs, outputs: dict[str, list], input_name: str = "input") -> bytes:
    """Rows: images; columns: input, then each model's output (uint8 HWC arrays)."""
    from PIL import Image, ImageDraw  # deferred: PIL
    cols = [input_name, *outputs]
    n = len(inputs)
    h, w = inputs[0].shape[:2]
    pad, top = 4, 16
    canvas = Image.new("RGB", (len(cols) * (w + pad) + pad, top + n * (h + pad) + pad),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(cols):
        x = pad + c * (w + pad)
        draw.text((x, 2), name, fill=(0, 0, 0))
        for r in range(n):
            img = inputs[r] if c == 0 else outputs[name][r]
            canvas.paste(Image.fromarray(img), (x, top + pad + r * (h + pad)))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def write_report(cfg: RunConfig, store=None, *, ctx=None) -> dict:
    """The report of a run (``store``: the store, a URL, or None for ``store.url``;
    ``ctx``: the pipeline's run context, else one is opened)."""
    from .context import reuse_or_open  # deferred: torch
    from .data.splits import choice_split, eval_split  # deferred: torch

    ctx = reuse_or_open(cfg, store, ctx)
    cfg, run = ctx.cfg, ctx.run
    size = int(cfg.data.crop_size)
    rows, models = collect_rows(cfg, run, size)
    if not rows:
        raise GancError(f"nothing to report in {run.url()}: no supernet, export or pruning")
    split = eval_split(cfg.data)
    score_rows(ctx, rows, models)
    record_fid_by_split(run, rows, split, choice_split(cfg.data))
    table = format_table(rows)
    files = {}
    if run.exists("search/fid_vs_macs.png"):
        run.write_bytes(f"{REPORT}/pareto.png", run.read_bytes("search/fid_vs_macs.png"))
        files["pareto"] = run.url(f"{REPORT}/pareto.png")
    if models:
        run.write_bytes(f"{REPORT}/grid.png", report_grid(ctx, models))
        files["grid"] = run.url(f"{REPORT}/grid.png")
    summary = {"rows": rows, "table": table, "size": size, "macs_convention": "torchprofile",
               "fid_split": split, "files": files}
    run.put_json(f"{REPORT}/summary.json", summary)
    run.write_bytes(f"{REPORT}/summary.txt", (table + "\n").encode())
    print("\n" + table + "\n", flush=True)
    return summary


def score_rows(ctx, rows: list[dict], models: dict) -> None:
    """Each row's FID (mIoU, KID) on the eval split, and KID on the search split beside
    the FID the search chose by, written into the rows."""
    # deferred: torch
    from .data.splits import (choice_split, eval_split, has_label_maps,
                              has_search_split)  # deferred: torch
    cfg = ctx.cfg
    split = eval_split(cfg.data)
    scored = score_on_eval_split(ctx, models)
    # KID (with its std) on the search split too, beside the FID the search chose by
    searched = (score_on_eval_split(ctx, models, report=False)
                if cfg.fid.kid and has_search_split(cfg.data) and not has_label_maps(cfg.data)
                else {})
    for r in rows:
        sc = scored.get(r["method"])
        r["fid"] = _finite(sc.fid) if sc is not None else None
        if sc is not None and sc.miou is not None:
            r["miou"] = _finite(sc.miou)
        if sc is not None and sc.kid_mean is not None:
            r["kid"], r["kid_std"] = _finite(sc.kid_mean), _finite(sc.kid_std)
        ss = searched.get(r["method"])
        if ss is not None and ss.kid_mean is not None:
            r["kid_search"], r["kid_search_std"] = _finite(ss.kid_mean), _finite(ss.kid_std)
            if r.get("fid_search") is None:
                r["fid_search"] = _finite(ss.fid)
        r["fid_split"], r["fid_search_split"] = split, choice_split(cfg.data)


def report_grid(ctx, models: dict) -> bytes:
    """The grid PNG: ``pipeline.report_images`` inputs of the eval split (label maps
    coloured) and each model's outputs."""
    import torch  # deferred: torch

    from .data.images import to_uint8  # deferred: torch
    from .data.splits import build_split, eval_split, has_label_maps  # deferred: torch
    cfg = ctx.cfg
    ds = build_split(cfg, ctx.data_root(), eval_split(cfg.data), train=False)
    n = min(int(cfg.pipeline.report_images), len(ds))
    items = [ds[i] for i in range(n)]
    xs = torch.stack([it["A"] for it in items])
    if has_label_maps(cfg.data):          # the label map, coloured
        from .data.camvid import colour_labels  # deferred: torch
        inputs = [colour_labels(it["label"]) for it in items]
    else:
        inputs = [to_uint8(x) for x in xs]
    outputs = {}
    with torch.inference_mode():
        for name, net in models.items():
            outputs[name] = [to_uint8(y) for y in net.cpu().eval()(xs)]
    return grid_png(inputs, outputs, "label map" if has_label_maps(cfg.data) else "input")


# ---------------------------------------------------------------- the table
def _kid(mean, std) -> str:
    """``0.0123+-0.0021`` (KID mean +- its std over subsets), ``-`` when not scored."""
    if not isinstance(mean, (int, float)) or mean != mean:
        return "-"
    return f"{mean:.4f}+-{std:.4f}" if isinstance(std, (int, float)) and std == std \
        else f"{mean:.4f}"


def format_table(rows: list[dict]) -> str:
    """The summary table: teacher vs the best of each method, with the FID on the eval
    split (``fid``) and on the split it was chosen by (``fid_search``)."""
    split = next((r["fid_split"] for r in rows if r.get("fid_split")), "")
    chosen = next((r["fid_search_split"] for r in rows if r.get("fid_search_split")), "search")
    fid_head = f"FID {split}"[:8] if split else "FID"
    miou = any(r.get("miou") is not None for r in rows)   # label-map data
    # KID (mean +- std over subsets) of each split, where the report scored it
    kids = [(k, f"KID {name}"[:15]) for k, name in (("kid", split), ("kid_search", chosen))
            if any(r.get(k) is not None for r in rows)]
    head = (f"{'model':34s} {'method':10s} {'GMACs':>8s} {'MACs x':>7s} {'params M':>9s} "
            f"{fid_head:>8s} {('FID ' + chosen)[:10]:>10s} {'CPU ms':>8s}"
            + (f" {'mIoU ' + split:>10s}" if miou else "")
            + "".join(f" {title:>15s}" for _, title in kids))
    lines = [head, "-" * len(head)]
    t_macs = next((r["macs"] for r in rows if r["method"] == "teacher" and r.get("macs")), None)

    def num(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) and v == v else "-"
    for r in rows:
        ratio = (t_macs / r["macs"]) if t_macs and r.get("macs") else None
        lines.append(f"{r['model'][:34]:34s} {r['method']:10s} "
                     f"{num(r.get('macs') and r['macs'] / 1e9, '8.3f'):>8s} "
                     f"{num(ratio, '6.1f'):>6s}x "
                     f"{num(r.get('params') and r['params'] / 1e6, '9.3f'):>9s} "
                     f"{num(r.get('fid'), '8.2f'):>8s} {num(r.get('fid_search'), '10.2f'):>10s} "
                     f"{num(r.get('latency_ms_cpu'), '8.1f'):>8s}"
                     + (f" {num(r.get('miou'), '10.2f'):>10s}" if miou else "")
                     + "".join(f" {_kid(r.get(k), r.get(k + '_std')):>15s}" for k, _ in kids))
    if miou:
        lines.append("mIoU: ESPNet-CamVid mIoU (ganc's stand-in for the paper's DRN-D-105 "
                     "Cityscapes mIoU)")
    return "\n".join(lines)


__all__ = ["write_report", "collect_rows", "grid_png", "format_table"]
