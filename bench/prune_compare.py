"""Evolution vs local-density pruning at one budget: every model a run exported, side by side.

Reads a run that went through the search stages (``export/``, the searched sub-network) and
one or more ``ganc prune`` variants (``prune/p<target>[-mobile][-nolds][-nopeer][-nod]``, each
its own folder), and prints one row per model:

- MACs and parameters at the eval size (``data.crop_size``, the field's convention);
- FID on the search split, as recorded when the model was chosen;
- FID on the eval split (``data.eval_split``, e.g. val), computed here, in one process, for
  every model with the same real statistics;
- CPU latency, eager PyTorch, batch 1, ``--threads`` threads, the median of ``--rounds``
  alternating rounds (every model timed once per round, so drift hits all alike);
- wall time of what produced the model: for evolution the supernet, search and fine-tune
  stages (from ``pipeline/<stage>.json``), for a prune variant its trial (agents, choice,
  fine-tune, export); the teacher's training, which all share, is given on its own row.

    python bench/prune_compare.py --config configs/facades_cpu.yaml --store /work/runs-facades \\
        --run-id fac [--threads 1] [--rounds 7] [--json]

``--json`` prints one object: ``{"run", "size", "eval_split", "threads", "rows": [{"model",
"method", "macs", "params", "fid_search", "fid_eval", "latency_ms", "wall_s", ...}]}``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SEARCH_STAGES = ("supernet", "search", "finetune")


def _stage_seconds(run, stage: str):
    key = f"pipeline/{stage}.json"
    return float(run.get_json(key).get("seconds", math.nan)) if run.exists(key) else math.nan


def _prune_prefixes(run) -> list[str]:
    """Every committed prune variant of the run (folders with a row.json)."""
    return sorted({k.rsplit("/", 1)[0] for k in run.ls("prune")
                   if k.endswith("/row.json") and k.count("/") == 2})


def collect(ctx):
    """(rows, models): what the run exported, with what the store recorded of each."""
    from ganc.profile import count_macs, count_params
    from ganc.report import _load_export
    from ganc.prune.models import build_teacher
    cfg, run = ctx.cfg, ctx.run
    size = int(cfg.data.crop_size)
    rows, models = [], {}

    def add(name, net, **info):
        models[name] = net
        rows.append({"model": name, "macs": count_macs(net, (1, 3, size, size)),
                     "params": count_params(net), **info})

    teacher, _, _ = build_teacher(cfg, run)
    teacher_fid = None
    if run.exists("search/teacher.json"):
        teacher_fid = run.get_json("search/teacher.json").get("fid")
    add("teacher", teacher.cpu().eval(), method="teacher", fid_search=teacher_fid,
        wall_s=_stage_seconds(run, "teacher"))
    if run.exists("export/model.json"):
        card, net = _load_export(run, "export")
        add(f"evolution {card['config_str']}", net, method="evolution",
            fid_search=card.get("fid", card.get("fid_search")),
            wall_s=sum(_stage_seconds(run, s) for s in SEARCH_STAGES),
            wall_parts={s: _stage_seconds(run, s) for s in SEARCH_STAGES})
    for prefix in _prune_prefixes(run):
        row = run.get_json(f"{prefix}/row.json")
        _, net = _load_export(run, prefix)
        add(prefix.split("/", 1)[1], net, method="prune-lds", fid_search=row.get("fid"),
            wall_s=row.get("wall_time"), base_model=row.get("base_model"),
            use_lds=row.get("use_lds"), peer_feedback=row.get("peer_feedback"),
            ratio_G=row.get("ratio_G"), ratio_D=row.get("ratio_D"),
            budget_macs=row.get("budget_macs"), chosen_by=row.get("chosen_by"),
            finetune_export=row.get("finetune_export"),
            fid_before_finetune=row.get("fid_before_finetune"),
            fid_after_finetune=row.get("fid_after_finetune"))
    return rows, models


def latencies(models: dict, size: int, threads: int, rounds: int) -> dict:
    """Median eager CPU latency (ms) of each model, alternating: one run of each per round."""
    import time

    import torch
    torch.set_num_threads(threads)
    x = torch.randn(1, 3, size, size)
    times = {name: [] for name in models}
    with torch.inference_mode():
        for net in models.values():          # warm-up
            for _ in range(2):
                net(x)
        for _ in range(rounds):
            for name, net in models.items():
                t0 = time.perf_counter()
                net(x)
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def main():
    from ganc.report import _finite, score_on_eval_split
    from _run import add_run_args, open_run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--threads", type=int, default=1, help="latency: CPU threads")
    ap.add_argument("--rounds", type=int, default=7, help="latency: alternating rounds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    _, ctx = open_run(args)
    size = int(ctx.cfg.data.crop_size)
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        rows, models = collect(ctx)
        if len(rows) < 2:
            sys.exit(f"nothing to compare in {ctx.run.url()}: run the search stages and/or "
                     "ganc prune first")
        scores = score_on_eval_split(ctx, models)
        lat = latencies(models, size, args.threads, args.rounds)
    for r in rows:
        sc = scores.get(r["model"])
        r["fid_eval"] = _finite(sc.fid) if sc is not None else None
        r["latency_ms"] = lat[r["model"]]
    res = {"run": ctx.run.url(), "size": size, "eval_split": ctx.cfg.data.eval_split,
           "threads": args.threads, "rounds": args.rounds, "load_avg": os.getloadavg(),
           "rows": rows}
    if args.json:
        print(json.dumps(res, default=float))
        return
    teacher = rows[0]
    print(f"{ctx.run.url()}  ({size}px, FID on {res['eval_split']}, eager CPU latency "
          f"{args.threads} thread(s), load {res['load_avg'][0]:.2f})")
    print(f"{'model':28s} {'MACs':>9s} {'x fewer':>7s} {'params':>8s} {'FID search':>10s} "
          f"{'FID eval':>8s} {'ms':>7s} {'wall s':>7s}")
    for r in rows:
        fs = f"{r['fid_search']:.1f}" if isinstance(r.get("fid_search"), float) else "-"
        fe = f"{r['fid_eval']:.1f}" if isinstance(r.get("fid_eval"), float) else "-"
        print(f"{r['model'][:28]:28s} {r['macs'] / 1e6:8.1f}M {teacher['macs'] / r['macs']:7.1f} "
              f"{r['params'] / 1e6:7.3f}M {fs:>10s} {fe:>8s} {r['latency_ms']:7.2f} "
              f"{r['wall_s'] or math.nan:7.0f}")
    for r in rows:
        if r.get("finetune_export"):
            print(f"  {r['model']}: fine-tune FID (search split) "
                  f"{r.get('fid_before_finetune') or math.nan:.1f} before, "
                  f"{r.get('fid_after_finetune') or math.nan:.1f} after: "
                  f"{r['finetune_export']} exported")


if __name__ == "__main__":
    main()
