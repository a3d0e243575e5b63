"""``ganc publish``: one exported model of a run into the model zoo."""
from __future__ import annotations

import json

from ..errors import ConfigError
from ._args import positive_float


def register(sub):
    p = sub.add_parser(
        "publish", help="copy one exported model of a run into the model zoo",
        description="Copy an exported model of STORE/runs/RUN_ID (model.pt byte for byte and "
                    "its model.json card) into --out, e.g. zoo/horse2zebra/<name>, adding to "
                    "the card: method, seed, recipe (stages and lengths, from the run's "
                    "stored config and records), licence (the teacher's attribution; a "
                    "LICENSE beside released teacher weights is copied as LICENSE.teacher) "
                    "and source (the run's URL). `ganc translate --weights OUT/model.pt` "
                    "then needs nothing else.")
    p.add_argument("--store", required=True,
                   help="artifact store: folder, file:///path or s3://bucket/prefix")
    p.add_argument("--run-id", required=True, help="the run: runs/<RUN_ID> of --store")
    p.add_argument("--model", metavar="WHICH",
                   help="best (the export: the search's best of the primary budget), "
                        "budget:MACS (the export, checked to be that budget's best), "
                        "prune:TARGET (prune/p<TARGET>) or a prune folder name "
                        "(p0.5-nolds); --list shows them")
    p.add_argument("--list", action="store_true",
                   help="list what the run can publish: name, method, MACs, FID")
    p.add_argument("--out", help="the zoo folder to write, e.g. zoo/horse2zebra/<name>")
    p.add_argument("--force", action="store_true",
                   help="replace an --out that exists and is not empty")
    p.add_argument("--max-mb", type=positive_float, default=2.0,
                   help="refuse a model.pt larger than this many MB (default 2, the zoo's "
                        "limit)")
    p.add_argument("--json", action="store_true", help="print the published card as JSON")
    p.set_defaults(func=cmd_publish)


def cmd_publish(args):
    from ..publish import describe, open_run, publish, published  # deferred: torch
    run = open_run(args.store, args.run_id)
    if args.list:
        entries = published(run)
        if not entries:
            print(f"nothing to publish: {run.url()} has no exported model "
                  "(run `ganc export` or the prune stage first)")
        for e in entries:
            print(describe(e))
        return 0
    if not args.model or not args.out:
        raise ConfigError("--model and --out are required (or --list)")
    card = publish(run, args.model, args.out, force=args.force, max_mb=args.max_mb)
    if args.json:
        print(json.dumps(card, sort_keys=True, default=str))
        return 0
    print(f"published {args.model} ({card['method']}, {card.get('macs', 0) / 1e9:.3f}G MACs, "
          f"FID {card.get('fid')}) from {card['source']} to {args.out}; licence: "
          f"{card['licence']['teacher']}")
    return 0
