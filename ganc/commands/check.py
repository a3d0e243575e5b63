"""``ganc check``: the checks every run command makes before it starts, alone, with every
image of a local dataset decoded."""
from __future__ import annotations

import json
import sys

from ._runconfig import add_run_args, load_run_config


def register(sub):
    p = sub.add_parser(
        "check", help="check a run's config, store, teacher checkpoint and data; start nothing",
        description="Resolves the config (--config, --set) and checks what every run command "
                    "checks before it starts Ray or writes a key: the config's fields, the "
                    "store (reachable and writable), model.teacher_weights (loaded with "
                    "weights_only into the net the config builds), the budgets, and the "
                    "dataset (folders, layout, split sizes; every image decoded for a local "
                    "data.root, a listing and a sample for a URL). Prints what it checked; "
                    "exits 2 with one line per problem.")
    add_run_args(p, workers=False)
    p.set_defaults(func=cmd_check)


def cmd_check(args):
    from ..preflight import check_run  # deferred: torch
    cfg = load_run_config(args)
    found = check_run(cfg, full=True)
    problems = [str(p) for p in found.problems]
    if args.json:
        print(json.dumps({"ok": not problems, "checked": found.checked,
                          "problems": problems}, sort_keys=True))
    else:
        for line in found.checked:
            print(f"ok  {line}")
        for line in problems:
            print(f"ganc check: error: {line}", file=sys.stderr)
    return 2 if problems else 0
