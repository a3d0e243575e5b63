"""``make demo``: the demo on the embedded default (generated data, a local folder store).

Until the full pipeline lands (``ganc compress``), it runs what exists end to end:
generate a paired dataset, profile the teacher against compressed configurations, and
(once teacher training exists) train a small teacher and translate the val split.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ganc.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/demo", help="demo folder (default runs/demo)")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from . import nn as gnn
    from .data.demo import make_demo_data
    from .profile import count_macs, count_params
    from .space import PRESETS

    data = os.path.join(args.out, "data")
    if not os.path.isdir(data):
        info = make_demo_data("paired", 64, 64, data, seed=0)
        print(f"[demo] generated {info['n']} paired training images at {data}", flush=True)
    else:
        print(f"[demo] using the generated data in {data}", flush=True)

    size = 256
    teacher = gnn.build("resnet_9blocks")
    t_macs = count_macs(teacher, (1, 3, size, size))
    rows = [("teacher resnet_9blocks", t_macs, count_params(teacher))]
    space = PRESETS["channels-64-cycleGAN"]
    for cfg in (space.largest(), "16_16_32_16_32_32_16_16", space.smallest()):
        m = gnn.build("sub_mobile_resnet_9blocks", config=str(cfg))
        rows.append((f"sub {cfg}", count_macs(m, (1, 3, size, size)), count_params(m)))
    print(f"\n[demo] MACs at {size}x{size} (GAN Compression tables' convention)")
    print(f"  {'model':36s} {'GMACs':>8s} {'params (M)':>11s} {'MACs ratio':>11s}")
    for name, macs, params in rows:
        print(f"  {name:36s} {macs / 1e9:8.2f} {params / 1e6:11.3f} {t_macs / macs:10.1f}x")
    with open(os.path.join(args.out, "profile.json"), "w") as f:
        json.dump([{"model": n, "macs": m, "params": p} for n, m, p in rows], f, indent=1)
    print(f"\n[demo] wrote {os.path.join(args.out, 'profile.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
