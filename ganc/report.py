"""The run report: teacher vs the exported model of the search and every pruned variant
(MACs, params, FID, CPU latency),
the FID-vs-MACs plot, and a grid of input / teacher / compressed outputs, written to
``runs/<id>/report/``.

The report is the only stage that reads the eval split (val / test): every model of the
table is scored there (``fid``), beside the FID it was chosen by on the search split
(``fid_search``, from ``best.json`` / the model card; see :mod:`ganc.data.splits`). Both go
into ``best.json`` and ``export/model.json`` as ``fid_by_split``."""
from __future__ import annotations

import io
import math
from typing import Optional

from .config import RunConfig
from .errors import GancError
from .paretoplot import Panel, Series, figure, png, tick_text, value_label
from .results import LEGACY_METHOD, PARETO, RESULTS, result_key

REPORT = "report"
PLOT = f"{REPORT}/pareto.png"


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
    for prefix, r in prune_rows(run).items():      # every pruned variant (folder) of the run
        if run.exists(f"{prefix}/model.json"):
            folder = prefix.rsplit("/", 1)[-1]
            _, net = _load_export(run, prefix)
            shape = (1, 3, size, size)
            key = f"prune-lds {folder}"
            rows.append({"model": f"pruned {folder}", "method": "prune-lds", "key": key,
                         "macs": count_macs(net, shape),
                         "params": count_params(net), "fid_search": _finite(r.get("fid")),
                         "latency_ms_cpu": _latency(net, shape), "source": run.url(prefix)})
            models[key] = net
    return rows, models


def prune_rows(run) -> dict:
    """``{folder: row}``, one per pruned variant (``prune/p<target>[-tags]``) of the run:
    the results table's ``prune-lds`` rows, with the prune summary's rows it lacks; of a
    folder's rows the last recorded."""
    rows = [r for r in _stored_rows(run, RESULTS) if r.get("method") == "prune-lds"]
    if run.exists("prune/summary.json"):
        rows += [r for r in run.get_json("prune/summary.json").get("rows", []) if r]
    by: dict = {}
    for r in rows:
        if r.get("target") is None:
            continue
        by[r.get("prefix") or f"prune/p{float(r['target']):g}"] = r
    return by


def score_on_eval_split(ctx, models: dict, report: bool = True) -> dict:
    """``{method: Score}`` of each model on the eval split (val / test; ``report=False``:
    on the search split), in-process: FID, KID (mean and std, with ``fid.kid``), and on
    label-map data the ESPNet-CamVid mIoU (:func:`score_models` in the run's context)."""
    from .metrics.splits import scoring_split  # deferred: torch, torch_fidelity
    held = scoring_split(ctx.cfg, ctx.data_root(), ctx.data.name, report=report)
    return score_models(ctx.cfg, held, ctx.root, models)


def score_models(cfg: RunConfig, held, store, models: dict) -> dict:
    """``{name: Score}`` of each model (a runnable generator) on ``held``, a split of
    :func:`ganc.metrics.splits.scoring_split` (the report's eval split, or with
    ``report=False`` the split the choices were made on), in this process without Ray:
    its inputs at ``data.crop_size``, its real set, the statistics cached in ``store``
    under its label, KID as ``fid.kid`` / ``fid.kid_subset_size`` say. The report scores
    through this, and so does ``ganc score``: one protocol."""
    from .metrics.pool import LocalPool, SubnetSpec  # deferred: torch, torch_fidelity
    if not models:
        return {}
    pool = LocalPool(held, store=store, fid=cfg.fid)
    for key, net in models.items():
        pool.register_model(key, net)
    scores = pool.score([SubnetSpec(key) for key in models])
    return dict(zip(models, scores))


def report_splits(data) -> dict:
    """``{split: report flag of score_models}`` of the splits the report scores: the eval
    split (``True``) and the split the choices were made on (``False``; absent when that
    is the eval split, ``data.search_split`` 0)."""
    from .data.splits import choice_split, eval_split  # deferred: torch
    out = {eval_split(data): True}
    out.setdefault(choice_split(data), False)
    return out


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
    from .context import stage_context  # deferred: torch
    with stage_context(cfg, store, ray=False, ctx=ctx) as ctx:   # the run's lease held
        return _report(ctx)


def _report(ctx) -> dict:
    """The body of :func:`write_report` in an opened run context."""
    from .data.splits import choice_split, eval_split  # deferred: torch
    cfg, run = ctx.cfg, ctx.run
    size = int(cfg.data.crop_size)
    rows, models = collect_rows(cfg, run, size)
    if not rows:
        raise GancError(f"nothing to report in {run.url()}: no supernet, export or pruning")
    score_rows(ctx, rows, models)
    record_fid_by_split(run, rows, eval_split(cfg.data), choice_split(cfg.data))
    files = {}
    if models:
        run.write_bytes(f"{REPORT}/grid.png", report_grid(ctx, models))
        files["grid"] = run.url(f"{REPORT}/grid.png")
    summary = publish(run, rows, images=split_images(ctx), size=size, files=files,
                      criterion=cfg.search.criterion or "fid", prune_n=int(cfg.prune.eval_n))
    print("\n" + summary["table"] + "\n", flush=True)
    return summary


def publish(run, rows: list[dict], *, images: dict, size: int, criterion: str = "fid",
            prune_n: int = 0, files: Optional[dict] = None) -> dict:
    """The report's table (``summary.txt``), its plot (``pareto.png``) and
    ``summary.json`` from the scored ``rows``; ``images``: {split: images its FID is
    computed on}; ``prune_n``: ``prune.eval_n`` (the prune stage's FIDs use the first n
    inputs of the split; 0: all)."""
    split, chosen = _splits(rows)
    files = dict(files or {})
    run.write_bytes(PLOT, png(pareto_figure(run, rows, criterion, images, prune_n)))
    files["pareto"] = run.url(PLOT)
    table = format_table(rows)
    summary = {"rows": rows, "table": table, "size": size, "macs_convention": "torchprofile",
               "fid_split": split, "fid_search_split": chosen,
               "fid_images": {k: v for k, v in images.items() if v}, "files": files}
    run.put_json(f"{REPORT}/summary.json", summary)
    run.write_bytes(f"{REPORT}/summary.txt", (table + "\n").encode())
    return summary


def split_images(ctx) -> dict:
    """``{split: inputs its FID is computed on}`` for the eval split and the split the
    choices were made on (as the scorers build them)."""
    from .metrics.splits import scoring_split  # deferred: torch, torch_fidelity
    cfg, root = ctx.cfg, ctx.data_root()
    return {split: len(scoring_split(cfg, root, ctx.data.name, report=report).inputs)
            for split, report in report_splits(cfg.data).items()}


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
        sc = scored.get(r.get("key") or r["method"])
        r["fid"] = _finite(sc.fid) if sc is not None else None
        if sc is not None and sc.miou is not None:
            r["miou"] = _finite(sc.miou)
        if sc is not None and sc.kid_mean is not None:
            r["kid"], r["kid_std"] = _finite(sc.kid_mean), _finite(sc.kid_std)
        ss = searched.get(r.get("key") or r["method"])
        if ss is not None and ss.kid_mean is not None:
            r["kid_search"], r["kid_search_std"] = _finite(ss.kid_mean), _finite(ss.kid_std)
            if r.get("fid_search") is None:
                r["fid_search"] = _finite(ss.fid)
        r["fid_split"], r["fid_search_split"] = split, choice_split(cfg.data)


def report_grid(ctx, models: dict) -> bytes:
    """The grid PNG: ``pipeline.report_images`` inputs of the eval split (label maps
    coloured) and each model's outputs (3 styles each for a MUNIT generator)."""
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
            outputs.update(_grid_columns(name, net.cpu().eval(), xs))
    return grid_png(inputs, outputs, "label map" if has_label_maps(cfg.data) else "input")


GRID_STYLE_SEEDS = (0, 1, 2)      # a net with a style code: one column per seed


def _grid_columns(name: str, net, xs) -> dict:
    """``{column: outputs}`` of one model: one column, or for a net that takes a style
    code (``ganc.extras``) one per style seed, each seed one code for every input."""
    from .data.images import to_uint8  # deferred: torch
    from .extras import draw_for, same_for_all  # deferred: torch
    if not draw_for(net, 1, 0):
        return {name: [to_uint8(y) for y in net(xs)]}
    return {f"{name} s{seed}": [to_uint8(y) for y in
                                net(xs, **same_for_all(draw_for(net, 1, seed), len(xs)))]
            for seed in GRID_STYLE_SEEDS}


# ---------------------------------------------------------------- the plot
def _splits(rows: list[dict]) -> tuple[str, str]:
    """(eval split, the split the choices were made on) the rows were scored on."""
    split = next((r["fid_split"] for r in rows if r.get("fid_split")), "")
    return split, next((r["fid_search_split"] for r in rows if r.get("fid_search_split")),
                       "search")


def _stored_rows(run, key: str) -> list[dict]:
    """The scored rows of a results-type table (``status`` ok or absent)."""
    rows = run.get_parquet(key).to_pylist() if run.exists(key) else []
    return [r for r in rows if (r.get("status") or "ok") == "ok"]


def _groups(rows: list[dict]) -> dict:
    """Rows by (method, budget): each search's, and the prune stage's (no budget)."""
    out: dict = {}
    for r in rows:
        out.setdefault((r.get("method") or LEGACY_METHOD, r.get("budget")), []).append(r)
    return out


def stage_series(run, criterion: str, prune_n: int = 0) -> tuple[list[Series], list]:
    """Every model the stages scored on the choice split (the results table, with the
    prune stage's ``prune/summary.json`` rows it lacks): each search's candidates and
    Pareto front per method and budget, the pruned models; and the searches' budgets."""
    rows = _stored_rows(run, RESULTS)
    have = {result_key(r) for r in rows}
    if run.exists("prune/summary.json"):
        rows += [r for r in run.get_json("prune/summary.json").get("rows", [])
                 if r and result_key(r) not in have]
    fronts = _groups(_stored_rows(run, PARETO))
    series, budgets = [], []
    for i, ((method, budget), group) in enumerate(_groups(rows).items()):
        color = f"C{(i + 4) % 10}"
        values = [r.get(criterion) for r in group]
        macs = [r.get("macs") for r in group]
        if all(r.get("target") is not None for r in group):     # the prune stage's models
            targets = ", ".join(f"{float(r['target']):g}" for r in group)
            n = f", first {prune_n} inputs" if prune_n else ""
            series.append(Series(f"{method}: pruned models (p={targets}{n})", macs, values,
                                 method, "model", color))
            continue
        at = f", budget {tick_text(budget / 1e9)}" if budget is not None else ""
        series.append(Series(f"{method}{at}: scored ({len(group)})", macs, values, method,
                             color=color))
        front = fronts.get((method, budget), [])
        if front:
            series.append(Series(f"{method}{at}: Pareto front", [r.get("macs") for r in front],
                                 [r.get(criterion) for r in front], method, "front", color))
        if budget is not None:
            budgets.append(budget)
    return series, budgets


def _table_series(rows: list[dict], key: str, search: bool,
                  colors: Optional[dict] = None) -> list[Series]:
    """The table's models (the teacher, the exported model; on the eval split the pruned
    one too) at their ``key`` values (``colors``: the stage series' colour of a method)."""
    out, colors = [], {"teacher": "k", "exported": "C3", **(colors or {})}
    for r in rows:
        role = "teacher" if r["method"] == "teacher" else "exported" if "exported" in r \
            else r["method"]
        if search and role not in ("teacher", "exported"):
            continue             # the pruned models are in the prune stage's series
        label = ("teacher" if role == "teacher" else f"{r['method']}: {r['model']}"
                 if role == r["method"] else f"{role}: {r['method']} {r['model']}")
        if role == "exported" and r.get("exported"):
            label += f" ({r['exported']})"
        out.append(Series(label[:60], [r.get("macs")], [r.get(key)], role, "model",
                          colors.get(role, "C2")))
    return out


def pareto_figure(run, rows: list[dict], criterion: str = "fid", images: Optional[dict] = None,
                  prune_n: int = 0):
    """The report's figure, one panel a split: on the split the choices were made on,
    every model the stages scored (:func:`stage_series`), the exported model and the
    teacher; on the eval split, the table's models as the report scored them. Each
    y axis names its split and image count."""
    split, chosen = _splits(rows)
    images = images or {}
    if prune_n and prune_n >= (images.get(chosen) or float("inf")):
        prune_n = 0                     # the first n inputs are all of them
    series, budgets = stage_series(run, criterion, prune_n)
    colors: dict = {}
    for s in series:
        colors.setdefault(s.method, s.color)
    search = Panel(value_label(criterion, chosen, images.get(chosen)),
                   series + _table_series(rows, f"{criterion}_search", True), budgets)
    if split == chosen:                 # data.search_split 0: the choices were made on it
        return figure([search])
    return figure([search, Panel(value_label(criterion, split, images.get(split)),
                                 _table_series(rows, criterion, False, colors))])


# ---------------------------------------------------------------- the table
def _kid(mean, std) -> str:
    """``0.0123+-0.0021`` (KID mean +- its std over subsets), ``-`` when not scored."""
    if not isinstance(mean, (int, float)) or mean != mean:
        return "-"
    return f"{mean:.4f}+-{std:.4f}" if isinstance(std, (int, float)) and std == std \
        else f"{mean:.4f}"


def _num(v, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and v == v else "-"


def table_columns(rows: list[dict]) -> list[tuple]:
    """The table's columns: (title, least width, the cell of a row; a negative width
    left-aligns). Every score's title names its split: ``FID val``, ``FID search``, ..."""
    split, chosen = _splits(rows)
    t_macs = next((r["macs"] for r in rows if r["method"] == "teacher" and r.get("macs")), None)

    def ratio(r):
        x = (t_macs / r["macs"]) if t_macs and r.get("macs") else None
        return _num(x, ".1f") + ("x" if x is not None else "")
    cols = [("model", -34, lambda r: r["model"][:34]), ("method", -10, lambda r: r["method"]),
            ("GMACs", 8, lambda r: _num(r.get("macs") and r["macs"] / 1e9, ".3f")),
            ("MACs x", 7, ratio),
            ("params M", 9, lambda r: _num(r.get("params") and r["params"] / 1e6, ".3f")),
            (f"FID {split}" if split else "FID", 8, lambda r: _num(r.get("fid"), ".2f")),
            (f"FID {chosen}", 10, lambda r: _num(r.get("fid_search"), ".2f")),
            ("CPU ms", 8, lambda r: _num(r.get("latency_ms_cpu"), ".1f"))]
    if any(r.get("miou") is not None for r in rows):                  # label-map data
        cols.append((f"mIoU {split}", 10, lambda r: _num(r.get("miou"), ".2f")))
    # KID (mean +- std over subsets) of each split, where the report scored it
    for k, name in (("kid", split), ("kid_search", chosen)):
        if any(r.get(k) is not None for r in rows):
            cols.append((f"KID {name}", 15, lambda r, k=k: _kid(r.get(k), r.get(k + "_std"))))
    return cols


def format_table(rows: list[dict]) -> str:
    """The summary table: teacher vs the best of each method, with the FID on the eval
    split (``fid``) and on the split it was chosen by (``fid_search``), each column
    titled with its split (never cut short)."""
    cols = table_columns(rows)

    def line(cells):
        return " ".join(f"{c:<{-w}s}" if w < 0 else f"{c:>{w}s}"
                        for c, w in zip(cells, widths))
    widths = [-max(-w, len(t)) if w < 0 else max(w, len(t)) for t, w, _ in cols]
    head = line([t for t, _, _ in cols])
    lines = [head, "-" * len(head)] + [line([cell(r) for _, _, cell in cols]) for r in rows]
    if any(t.startswith("mIoU") for t, _, _ in cols):
        lines.append("mIoU: ESPNet-CamVid mIoU (ganc's stand-in for the paper's DRN-D-105 "
                     "Cityscapes mIoU)")
    return "\n".join(lines)


__all__ = ["write_report", "collect_rows", "score_models", "report_splits", "input_shape",
           "grid_png", "format_table", "publish", "pareto_figure", "stage_series",
           "split_images", "table_columns", "PLOT"]
