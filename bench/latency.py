"""CPU latency of the teacher (resnet_9blocks) vs the released compressed horse2zebra model.

Both run at batch 1 and the same resolution, measured alternately in one run (teacher,
compressed, teacher, ...) so machine noise hits both alike; prints medians, their ratio,
and the MACs ratio beside it.

    python bench/latency.py [--size 256] [--repeats 7] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ganc import nn as gnn  # noqa: E402
from ganc.profile import count_macs, count_params  # noqa: E402
from ganc.weights import load_weights  # noqa: E402

RELEASED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                        "shared", "models", "gan-compression-horse2zebra-compressed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    teacher = gnn.build("resnet_9blocks").eval()
    compressed = gnn.build("sub_mobile_resnet_9blocks", config="16_16_32_16_32_32_16_16").eval()
    weights = os.path.join(RELEASED, "latest_net_G.pth")
    source = "released weights" if os.path.exists(weights) else "random init (../shared missing)"
    if os.path.exists(weights):
        load_weights(compressed, weights)
    models = {"teacher resnet_9blocks": teacher,
              "compressed 16_16_32_16_32_32_16_16": compressed}
    x = torch.randn(1, 3, args.size, args.size)
    times = {k: [] for k in models}
    with torch.inference_mode():
        for _ in range(args.warmup):
            for m in models.values():
                m(x)
        for _ in range(args.repeats):
            for k, m in models.items():   # alternate: one of each per round
                t0 = time.perf_counter()
                m(x)
                times[k].append((time.perf_counter() - t0) * 1e3)
    rows = {}
    for k, m in models.items():
        rows[k] = {"median_ms": statistics.median(times[k]),
                   "macs": count_macs(m, (1, 3, args.size, args.size)),
                   "params": count_params(m)}
    t, c = rows.values()
    result = {"size": args.size, "repeats": args.repeats, "threads": torch.get_num_threads(),
              "compressed_weights": source, "models": rows,
              "latency_ratio": t["median_ms"] / c["median_ms"],
              "macs_ratio": t["macs"] / c["macs"]}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"CPU latency, batch 1, {args.size}x{args.size}, {result['threads']} threads, "
          f"median of {args.repeats} alternating runs ({source})")
    for k, r in rows.items():
        print(f"  {k:38s} {r['median_ms']:9.1f} ms  {r['macs'] / 1e9:7.2f} GMACs  "
              f"{r['params'] / 1e6:6.3f} M params")
    print(f"  speed-up (latency ratio): {result['latency_ratio']:.2f}x   "
          f"MACs ratio: {result['macs_ratio']:.2f}x")


if __name__ == "__main__":
    main()
