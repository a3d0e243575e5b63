"""``ganc search``, ``ganc finetune``, ``ganc export``, ``ganc runs``, ``ganc pull``."""
from __future__ import annotations

import contextlib
import json
import sys

from ._args import positive_float
from ._runconfig import add_run_args, load_run_config, set_flags


def register(sub):
    p = sub.add_parser(
        "search", help="search the supernet for the best sub-network under a MACs budget",
        description="Ray Tune search over the sub-networks of runs/<id>/supernet/final.pt, "
                    "each trial scored by FID through the FID actor pool. Writes "
                    "search/results.parquet, search/pareto.parquet, search/fid_vs_macs.png and "
                    "best.json under the run. Re-running an interrupted search resumes it.")
    add_run_args(p, workers=False)
    p.add_argument("--method", choices=["evolution", "nsga2"],
                   help="evolution (GAN Compression) or nsga2 (Optuna, Pareto over FID and "
                        "MACs); default search.method")
    p.add_argument("--budget-macs", type=float,
                   help="MACs budget at the eval size (default search.budget_macs; 0: a tenth "
                        "of the teacher's)")
    p.add_argument("--budget-ms", type=float,
                   help="latency budget in ms by the latency table of search.latency_runtime "
                        "(default search.budget_ms; alone, no MACs budget applies)")
    p.add_argument("--fresh", action="store_true",
                   help="start a new Tune experiment instead of resuming an unfinished one")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser(
        "finetune", help="fine-tune the chosen sub-network (Ray Train)",
        description="Fine-tune best.json's sub-network (or --subnet-config) with the supernet's "
                    "distillation loop at a fixed config, starting from the supernet weights; "
                    "scores FID before and after and writes finetune/result.json.")
    add_run_args(p, workers=False)
    p.add_argument("--subnet-config", help="channel config to fine-tune (default: best.json)")
    p.add_argument("--local", action="store_true",
                   help="run in this process instead of on Ray Train")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "export", help="export the chosen sub-network: state dict, ONNX, torch.export, "
                       "model card",
        description="Writes export/model.pt (plain sub_mobile_resnet_9blocks state dict), "
                    "export/model.onnx (ONNX, dynamic batch and size, checked against eager "
                    "through onnxruntime), export/model.pt2 (torch.export) and "
                    "export/model.json (model card: latency per runtime and thread count, "
                    "machine) under the run; `ganc translate --weights .../model.pt` or "
                    "`--onnx .../model.onnx` runs them.")
    add_run_args(p, workers=False)
    p.add_argument("--subnet-config", help="channel config to export (default: best.json)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("runs", help="list the runs of a store with their best FID / MACs")
    p.add_argument("store", help="folder, file:///path or s3://bucket/prefix")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "pull", help="download a run's exported best model, model card and best.json",
        description="ganc pull STORE/runs/<id> --best -o DIR. Refuses object keys that would "
                    "be written outside DIR.")
    p.add_argument("run_url", metavar="RUN", help="STORE/runs/<id> (folder, file:// or s3://)")
    p.add_argument("--best", action="store_true",
                   help="only export/* and best.json (the default); without it: the whole run")
    p.add_argument("--all", action="store_true", help="download every object of the run")
    p.add_argument("--budget", type=positive_float, default=None,
                   help="the best of this search budget (MACs as best.json records them; "
                        "default: the primary budget)")
    p.add_argument("-o", "--out", required=True, help="target folder")
    p.set_defaults(func=cmd_pull)


def _cfg(args):
    return load_run_config(args)


def _require(cfg, stage: str, **kw) -> None:
    """The checks before a stage command starts (:func:`ganc.preflight.require`)."""
    from ..preflight import require  # deferred: torch
    require(cfg, stage=stage, **kw)


def _quiet(args):
    """With --json, whatever Ray / Tune print goes to stderr so stdout is one JSON object."""
    return contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()


def _print(args, obj, lines):
    if args.json:
        print(json.dumps(obj, sort_keys=True, default=str))
    else:
        for line in lines:
            print(line)


def _g(x):
    return "-" if x is None else f"{x / 1e9:.3f}G"


def _f(x):
    return "-" if x is None else f"{x:.2f}"


def cmd_search(args):
    from ..search.driver import run_search  # deferred: torch
    cfg = _cfg(args)
    set_flags(cfg, args, budget_macs="search.budget_macs", budget_ms="search.budget_ms")
    _require(cfg, "search", method=args.method)
    with _quiet(args):
        out = run_search(cfg, method=args.method, fresh=args.fresh)
    t = out.get("teacher") or {}
    sc = out["search"]
    budget = _g(sc["budget_macs"]) + (f", {sc['budget_ms']:g} ms" if sc.get("budget_ms") else "")
    lines = [f"best {out['config']}: FID {_f(out['fid'])}, MACs {_g(out['macs'])} "
             f"({out['macs']:,}), params {out['params']:,}",
             f"teacher: FID {_f(t.get('fid'))}, MACs {_g(t.get('macs'))}",
             f"scored {out['n_scored']} configs ({sc['method']}, budget {budget}); "
             f"Pareto front {out['n_pareto']}"]
    if "latency_ms" in out:
        lat = sc["latency_table"]
        lines.append(f"predicted latency {out['latency_ms']:.2f} ms ({lat['runtime']}, "
                     f"{lat['threads']} threads, {lat['size']}px, table {lat['key']})")
    _print(args, out, lines + [f"results: {out['files']['results']}"])


def cmd_finetune(args):
    from ..search.finetune import finetune  # deferred: torch
    cfg = _cfg(args)
    _require(cfg, "finetune", subnet_config=args.subnet_config)
    with _quiet(args):
        out = finetune(cfg, config=args.subnet_config, runner="local" if args.local else None)
    if not out.get("enabled", True):
        _print(args, out, [f"no fine-tune of {out['config']}: {out['why']}"])
        return
    _print(args, out, [f"fine-tuned {out['config']} ({out['steps']} steps): FID "
                       f"{_f(out.get('fid_before'))} -> {_f(out.get('fid_after'))} on "
                       f"{out.get('fid_split', 'the eval split')}",
                       f"export: {out.get('export')} ({out.get('why')})",
                       f"weights: {out['final']}"])


def cmd_export(args):
    from ..export import export_best  # deferred: torch
    cfg = _cfg(args)
    _require(cfg, "export", subnet_config=args.subnet_config)
    with _quiet(args):
        card = export_best(cfg, config=args.subnet_config)
    lat = "; ".join(f"{rt} " + ", ".join(f"{ms:.1f} ms x{t}" for t, ms in per.items())
                    for rt, per in card["latency_ms"].items())
    _print(args, card, [
        f"exported {card['config_str']} ({card['exported']}: {card['export_why']}): "
        f"MACs {_g(card['macs'])}, params {card['params']:,}, " + (
            f"FID {_f(card['fid'])} on {card['fid_split']}" if card.get("fid") is not None
            else "FID not measured for this config"),
        f"latency (batch 1, threads): {lat}",
        f"ONNX opset {card['onnx']['opset']}, max abs diff vs eager "
        f"{card['onnx']['max_abs_diff_vs_eager']:.2g}",
        f"to {card['run']}/export/ (model.pt, model.onnx, model.pt2, model.json)"])


def cmd_runs(args):
    from ..runs import list_runs  # deferred: torch
    rows = list_runs(args.store)
    if args.json:
        for r in rows:
            print(json.dumps(r, sort_keys=True, default=str))
        return 0
    if not rows:
        print("no runs")
        return 0
    print(f"{'run':24} {'best config':26} {'FID':>8} {'MACs':>9} {'teacher FID':>11} "
          f"{'teacher MACs':>12} exported")
    for r in rows:
        if r.get("unreadable"):
            print(f"{r['run']:24} unreadable: {r['unreadable']}")
            continue
        print(f"{r['run']:24} {r['best'] or '-':26} {_f(r['fid']):>8} {_g(r['macs']):>9} "
              f"{_f(r['teacher_fid']):>11} {_g(r['teacher_macs']):>12} "
              f"{'yes' if r['exported'] else 'no'}")
    return 0


def cmd_pull(args):
    from ..runs import pull  # deferred: torch
    paths = pull(args.run_url, args.out, best=not args.all, budget=args.budget)
    for p in paths:
        print(p)
    return 0
