"""``ganc compress``: the whole pipeline (teacher -> supernet -> search -> pruning ->
fine-tune -> export -> report) as one job, resumable stage by stage."""
from __future__ import annotations

import json

from ..errors import ConfigError
from ..stages import STAGE_NAMES
from ._runconfig import add_run_args, load_run_config


def register(sub):
    p = sub.add_parser(
        "compress", help="the whole pipeline, end to end, resumable",
        description="Teacher (trained, or model.teacher_weights) -> supernet distillation -> "
                    "search (evolution, or --method nsga2) -> pruning agents -> fine-tune -> "
                    "export -> report, all in <store>/runs/<run_id>/. A finished stage is "
                    "skipped when the job is submitted again; an interrupted one resumes.")
    add_run_args(p)
    p.add_argument("--method", choices=["evolution", "nsga2"],
                   help="search method (default: search.method)")
    p.add_argument("--no-prune", action="store_true", help="skip the pruning-agent variant")
    p.add_argument("--stages", help="comma-separated subset of the stages to run: "
                                    + ",".join(STAGE_NAMES))
    p.add_argument("--restart-from", metavar="STAGE",
                   help="forget this stage and every later one (markers and outputs) and "
                        "run them again, e.g. after changing their config")
    p.set_defaults(func=cmd_compress)


def cmd_compress(args):
    from ..pipeline import compress  # deferred: torch

    cfg = load_run_config(args)
    if args.stages:
        cfg.pipeline.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if args.no_prune:
        cfg.pipeline.stages = [s for s in cfg.pipeline.stages if s != "prune"]
    if args.restart_from is not None and args.restart_from not in cfg.pipeline.stages:
        raise ConfigError(f"--restart-from {args.restart_from!r} is not one of this job's "
                          f"stages: {', '.join(cfg.pipeline.stages)}")
    result = compress(cfg, method=args.method, restart=args.restart_from)
    if args.json:
        print(json.dumps(result, sort_keys=True, default=str))
        return 0
    print(f"compress finished: {result['run']} ({result['seconds']:.0f}s)")
    rep = result.get("report")
    if rep:
        for name, url in rep.get("files", {}).items():
            print(f"  {name}: {url}")
    return 0
