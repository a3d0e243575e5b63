"""``ganc prune``: local-density pruning agents, one Ray Tune trial per target ratio."""
from __future__ import annotations

import json

from ._runconfig import add_run_args, load_run_config, set_flags


def register(sub):
    p = sub.add_parser(
        "prune", help="prune the teacher with coupled G/D agents (local-density loss) on Ray Tune",
        description="Ganjdanesh et al. (AAAI 2024), our design (GUIDE §3): agents genG / genD "
                    "gate the channels of the teacher generator (or the supernet's largest "
                    "sub-network) and its discriminator under MACs targets (default: the "
                    "search's budget), with a local-density-structure loss. One Ray Tune "
                    "trial per target; sampled sub-generators, projected to the budget, are "
                    "scored on the FID actor pool; the best is sliced into a plain "
                    "generator, fine-tuned and exported to "
                    "<store>/runs/<run_id>/prune/p<target>/; rows with method "
                    "'prune-lds' are appended to search/results.parquet.")
    add_run_args(p, workers=False)
    p.add_argument("--targets", help="MACs ratio targets of G, comma-separated, e.g. 0.1,0.05 "
                                     "(default: prune.targets)")
    p.add_argument("--d-target", type=float, help="MACs ratio target of D (prune.d_target)")
    p.add_argument("--base-model", choices=["teacher", "mobile"],
                   help="network pruned: the dense teacher or the supernet's largest "
                        "sub-network (prune.base_model)")
    p.add_argument("--no-lds", action="store_true", help="ablation: no local-density loss")
    p.add_argument("--no-peer-feedback", action="store_true",
                   help="ablation: agents do not see each other's gates and losses")
    p.add_argument("--no-prune-d", action="store_true", help="ablation: keep D whole")
    p.add_argument("--fid", choices=["pool", "local", "none"], default="pool",
                   help="score sampled sub-generators on the Ray FID actor pool (default), "
                        "in each trial's process, or not at all")
    p.set_defaults(func=cmd_prune)


def cmd_prune(args):
    from ..preflight import require  # deferred: torch
    from ..prune.driver import run_prune  # deferred: torch

    cfg = load_run_config(args)
    set_flags(cfg, args, targets="prune.targets", d_target="prune.d_target")
    if args.base_model:
        cfg.prune.base_model = args.base_model
    if args.no_lds:
        cfg.prune.use_lds = False
    if args.no_peer_feedback:
        cfg.prune.peer_feedback = False
    if args.no_prune_d:
        cfg.prune.prune_d = False
    require(cfg, stage="prune")
    summary = run_prune(cfg, scorer=args.fid)
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=str))
        return 0
    print(f"prune-lds: {len(summary['rows'])} target(s) in {summary['seconds']:.0f}s; "
          f"results {summary['results']}")
    for r in summary["rows"]:
        print(f"  p={r['target']:g}: G MACs {r['macs'] / 1e9:.4f}G (ratio {r['ratio_G']:.3f}), "
              f"D ratio {r['ratio_D']:.3f}, FID {r['fid']:.2f} -> {r['export']}")
    return 0
