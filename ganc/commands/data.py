"""``ganc make-demo-data`` and ``ganc check-data``."""
from __future__ import annotations

import json

from ._args import count, count_or_zero


def register(sub):
    p = sub.add_parser("make-demo-data", help="write a procedurally generated dataset",
                       description="Label maps of random shapes (A) <-> shaded, textured "
                                   "renderings (B). paired: train/ and val/ with A|B side by "
                                   "side; unpaired: trainA, trainB, testA, testB.")
    p.add_argument("--kind", choices=["paired", "unpaired"], default="paired",
                   help="paired: the pix2pix layout; unpaired: the CycleGAN layout")
    p.add_argument("--n", type=count, default=64, help="training images (default 64)")
    p.add_argument("--n-test", type=count, default=None,
                   help="test/val images (default n/4, >=4)")
    p.add_argument("--size", type=count, default=64, help="image side (default 64)")
    p.add_argument("--seed", type=count_or_zero, default=0,
                   help="the same seed gives the same data")
    p.add_argument("--out", required=True, help="output folder (must be new or empty)")
    p.set_defaults(func=cmd_make_demo_data)

    p = sub.add_parser("check-data", help="validate a dataset before a long job",
                       description="Decode every image of a dataset and check its layout "
                                   "(aligned: A|B of even width; unaligned: <split>A and "
                                   "<split>B). Prints a summary or one error line.")
    p.add_argument("--kind", choices=["aligned", "unaligned", "single"], default="aligned",
                   help="layout: A|B side by side, <split>A + <split>B, or one folder")
    p.add_argument("--root", required=True, help="dataset folder")
    p.add_argument("--split", default="train", help="split (default train); single: '' uses "
                                                    "--root itself")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], default="AtoB",
                   help="aligned: which half is the input")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_check_data)


def cmd_make_demo_data(args):
    from ..data.demo import make_demo_data  # deferred: torch
    info = make_demo_data(args.kind, args.n, args.size, args.out, args.seed, args.n_test)
    print(f"wrote {args.kind} demo data to {args.out}: {info['n']} train + {info['n_test']} "
          f"test images of {info['size']}x{info['size']} (seed {info['seed']})")
    return 0


def cmd_check_data(args):
    from ..data.datasets import build_dataset  # deferred: torch
    from ..data.images import load_rgb  # deferred: torch
    ds = build_dataset(args.kind, args.root, args.split, args.direction, train_aug=False)
    sizes = set()
    if args.kind == "aligned":
        for i in range(len(ds)):
            a, _ = ds.load_pair(i)
            sizes.add(a.size)
        n = {"pairs": len(ds)}
    elif args.kind == "unaligned":
        for p in ds.paths_A + ds.paths_B:
            sizes.add(load_rgb(p).size)
        n = {"A": len(ds.paths_A), "B": len(ds.paths_B)}
    else:
        for p in ds.paths:
            sizes.add(load_rgb(p).size)
        n = {"images": len(ds)}
    res = {"kind": args.kind, "root": args.root, "split": args.split, **n,
           "sizes": sorted([list(s) for s in sizes])[:10]}
    print(json.dumps(res) if args.json else
          f"ok: {args.kind} dataset {args.root} split {args.split!r}: "
          + ", ".join(f"{v} {k}" for k, v in n.items())
          + f"; image sizes {', '.join('x'.join(map(str, s)) for s in sorted(sizes)[:5])}")
    return 0
