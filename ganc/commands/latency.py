"""``ganc latency-table``: measure (and validate) this machine's latency table."""
from __future__ import annotations

import json
import random

from ..errors import ConfigError
from ..space import SearchSpace, get_space
from ..store import open_store
from ._args import count, count_or_zero


def register(sub):
    p = sub.add_parser(
        "latency-table", help="measure this machine's per-layer latency table for the search",
        description="Time every (segment, widths) entry of a search space's sub-networks on "
                    "a runtime and cache the table in a store under latency/<device>/, where "
                    "`ganc search` with search.budget_ms or search.latency_objective finds "
                    "it. Run it on the machine you deploy to; put the printed device id in "
                    "search.latency_device to search for that machine elsewhere. "
                    "--validate N also times N random whole sub-networks side by side and "
                    "prints the table's rank correlation and median error.")
    p.add_argument("--space", default="channels-64-cycleGAN",
                   help="named search space (channels-64-cycleGAN, channels-64-pix2pix)")
    p.add_argument("--widths", help="instead of --space: these widths at every position, "
                                    "e.g. 16,12,8,4 (as distill.space_widths)")
    p.add_argument("--size", type=count, default=256, help="input height = width (eval size)")
    p.add_argument("--runtime", default="onnxruntime", help="eager or onnxruntime")
    p.add_argument("--threads", type=count_or_zero, default=1,
                   help="intra-op threads (0: the runtime's default); default 1")
    p.add_argument("--rounds", type=count, default=5, help="timing rounds (medians)")
    p.add_argument("--norm", choices=["instance", "batch", "none"], default="instance",
                   help="the networks' normalization")
    p.add_argument("--store", help="store to cache the table in (folder, file:// or s3://)")
    p.add_argument("--validate", type=count_or_zero, default=0, metavar="N",
                   help="also time N random sub-networks and compare with the table")
    p.add_argument("--seed", type=count_or_zero, default=0, help="--validate: random configs' seed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_latency_table)


def cmd_latency_table(args):
    from ..runtime import check_runtime, check_threads  # deferred: torch
    from ..search.latency import table_key  # deferred: torch
    from ..search.latency_build import build_and_validate, build_table  # deferred: torch

    check_runtime(args.runtime)
    check_threads(args.threads)
    if args.size < 8 or args.size % 4:
        raise ConfigError(f"--size must be a positive multiple of 4, got {args.size}")
    if args.widths:
        try:
            widths = [int(w) for w in args.widths.split(",")]
        except ValueError:
            raise ConfigError(f"--widths {args.widths!r}: expected numbers like 16,12,8"
                              ) from None
        space = SearchSpace.uniform("widths-" + "-".join(map(str, widths)), widths)
    else:
        space = get_space(args.space)
    log = (lambda *a: None) if args.json else print
    kw = dict(runtime=args.runtime, threads=args.threads, rounds=args.rounds, norm=args.norm,
              log=log)
    validation = None
    if args.validate:
        rng = random.Random(args.seed)
        configs, tries = [], 0
        while len(configs) < args.validate and tries < 100 * args.validate:
            c = str(space.sample(rng))
            tries += 1
            if c not in configs:
                configs.append(c)
        table, validation = build_and_validate(space, args.size, configs, **kw)
    else:
        table = build_table(space, args.size, **kw)
    key = table_key(space, args.size, args.runtime, args.threads, norm=args.norm)
    where = None
    if args.store:
        st = open_store(args.store)
        st.put_json(key, table.to_dict())
        where = st.url(key)
    out = {**table.describe(), "key": key, "stored": where, "build_s": table.build_s,
           "scale": table.scale, "machine": table.machine,
           "smallest_ms": table.predict(space.smallest()),
           "largest_ms": table.predict(space.largest())}
    if validation:
        out["validation"] = validation
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"latency table of {space.name} at {args.size}px on {args.runtime} "
          f"({table.threads} threads): {len(table.entries)} entries in {table.build_s:.0f} s")
    print(f"  device {table.device} ({table.machine.get('cpu')})")
    print(f"  predicted: smallest {out['smallest_ms']:.2f} ms, largest {out['largest_ms']:.2f} ms")
    if validation:
        print(f"  validation on {validation['n']} random sub-networks: Spearman "
              f"{validation['spearman']:.3f}, median error "
              f"{100 * validation['median_rel_error']:.1f}%")
    print(f"  {'stored at ' + where if where else 'not stored (no --store)'}")
    return 0
