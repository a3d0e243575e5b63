"""Latency budget vs MACs budget: is the sub-network found under a latency budget faster on
the runtime than the MACs-budget winner, at no worse FID?

Needs a run with a trained supernet (e.g. ``ganc compress --config configs/demo.yaml
--stages teacher,supernet``, or the facades preset). Two searches with the same settings
and seed run on copies of that run (``<run>-bench-macs``, ``<run>-bench-ms``):

1. under the config's MACs budget (``search.budget_macs``; 0: a tenth of the teacher's);
2. under a latency budget equal to the MACs winner's latency by the table
   (``search.latency_runtime`` / ``latency_threads``, built once and cached in the store),
   with no MACs budget.

Then both winners are measured on the runtime side by side (whole networks, alternating
rounds, measured as the table measures: ``ganc.search.latency_build.measure_configs``) and
their search FIDs (same eval split, same supernet weights) compared.

    python bench/latency_search.py --config configs/demo.yaml [--store ./runs] [--run-id demo]
        [--set search.generations=3 ...] [--repeats 15] [--json]

``--json`` prints one object: ``{"runtime", "threads", "size", "budget_macs",
"budget_ms", "macs_winner": {...}, "latency_winner": {...}, "faster", "fid_no_worse",
"speedup"}``, each winner with ``config``, ``macs``, ``fid``, ``predicted_ms`` and
``measured_ms``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _copy_run(root, src: str, dst: str) -> None:
    """A new run holding the source run's supernet (and teacher score), nothing else."""
    s, d = root.run(src), root.run(dst)
    for key in ("supernet/final.pt", "search/teacher.json"):
        if s.exists(key) and not d.exists(key):
            d.write_bytes(key, s.read_bytes(key))


def main():
    from ganc.config import load_config
    from ganc.search.driver import cost_model, latency_table_for, load_supernet, run_search
    from ganc.search.latency_build import measure_configs
    from ganc.context import run_id_of
    from _run import add_run_args, open_run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cfg, ctx = open_run(args)                   # the run's recorded placement (eval size)
    root, run = ctx.root, ctx.run
    if not run.exists("supernet/final.pt"):
        sys.exit(f"no supernet at {run.url('supernet/final.pt')}: train one first "
                 f"(ganc compress --config {args.config} --stages teacher,supernet)")
    if cfg.search.budget_ms is not None:
        sys.exit("leave search.budget_ms unset: this bench sets it itself")
    cfg = ctx.cfg
    base = run_id_of(cfg)
    winners = {}
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
        for kind in ("macs", "ms"):
            rid = f"{base}-bench-{kind}"
            _copy_run(root, base, rid)
            c = load_config(args.config, args.overrides, args.store)
            c.store.run_id = rid
            if kind == "macs":
                winners[kind] = run_search(c, root, fresh=True)
                sup = load_supernet(root.run(rid))
                table, _ = latency_table_for(cfg, root, sup["space"],
                                             cost_model(sup, int(cfg.data.crop_size)))
                budget_ms = table.predict(winners[kind]["config"])
            else:
                c.search.budget_macs = 0        # the latency budget alone
                winners[kind] = run_search(c, root, budget_ms=budget_ms, fresh=True)
    sc = cfg.search
    size = int(cfg.data.crop_size)
    configs = [winners["macs"]["config"], winners["ms"]["config"]]
    measured = measure_configs(configs, size, runtime=sc.latency_runtime,
                               threads=int(sc.latency_threads), rounds=args.repeats)

    def row(w, ms):
        return {"config": w["config"], "macs": w["macs"], "fid": w["fid"],
                "predicted_ms": table.predict(w["config"]), "measured_ms": ms}
    res = {"runtime": sc.latency_runtime, "threads": int(sc.latency_threads), "size": size,
           "budget_macs": winners["macs"]["search"]["budget_macs"], "budget_ms": budget_ms,
           "macs_winner": row(winners["macs"], measured[0]),
           "latency_winner": row(winners["ms"], measured[1])}
    res["speedup"] = measured[0] / measured[1]
    res["faster"] = measured[1] < measured[0]
    res["fid_no_worse"] = winners["ms"]["fid"] <= winners["macs"]["fid"]
    if args.json:
        print(json.dumps(res))
        return
    for name in ("macs_winner", "latency_winner"):
        r = res[name]
        print(f"{name:15s} {r['config']}  {r['macs'] / 1e9:.3f} GMACs  FID {r['fid']:.2f}  "
              f"predicted {r['predicted_ms']:.2f} ms  measured {r['measured_ms']:.2f} ms")
    print(f"latency budget {budget_ms:.2f} ms ({res['runtime']}, {res['threads']} threads, "
          f"{size}px): {'faster' if res['faster'] else 'NOT faster'} "
          f"({res['speedup']:.2f}x), FID {'no worse' if res['fid_no_worse'] else 'worse'}")


if __name__ == "__main__":
    main()
