"""``ganc train-teacher`` and ``ganc train-supernet``: Ray Train jobs on a config file."""
from __future__ import annotations

import json

from ._runconfig import add_run_args, load_run_config


def register(sub):
    p = sub.add_parser(
        "train-teacher", help="train a pix2pix / CycleGAN teacher on Ray Train",
        description="Train a ResNet teacher: pix2pix for aligned data (L1 x lambda_L1 + GAN), "
                    "CycleGAN for unaligned data (two G, two D, cycle, identity, image pool). "
                    "Checkpoints every teacher.checkpoint_every steps go to "
                    "<store>/runs/<run_id>/teacher/; a re-run continues from the newest one "
                    "and a finished run is not trained again.")
    add_run_args(p)
    p.set_defaults(func=cmd_train, stage="teacher")
    p = sub.add_parser(
        "train-supernet", help="distil the once-for-all supernet on Ray Train",
        description="GAN Compression supernet distillation from a frozen teacher "
                    "(model.teacher_weights, or this run's teacher/final.pt). Writes "
                    "<store>/runs/<run_id>/supernet/final.pt for the search stage.")
    add_run_args(p)
    p.set_defaults(func=cmd_train, stage="supernet")


def cmd_train(args):
    from ..preflight import require  # deferred: torch
    cfg = load_run_config(args)
    require(cfg, stage=args.stage)
    if args.stage == "teacher":
        from ..train.teacher import train_teacher as stage  # deferred: torch
    else:
        from ..train.supernet import train_supernet as stage  # deferred: torch
    summary = stage(cfg)
    summary.pop("history", None)
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=str))
    elif summary.get("trained") is False:      # model.teacher_weights: loaded, not trained
        print(f"{args.stage}: using {summary['source']} (model.teacher_weights); not trained")
    else:
        what = "already finished" if summary["skipped"] else "finished"
        scores = {k: round(v, 4) for k, v in summary["metrics"].items()
                  if k not in ("step", "step_time_s")}
        print(f"{args.stage} {what}: step {summary['step']} -> {summary['final']}")
        if scores:
            print("last metrics: " + ", ".join(f"{k}={v}" for k, v in sorted(scores.items())))
    return 0
