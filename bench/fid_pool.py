"""FID service throughput, measured side by side in one run on the same inputs:

1. configs scored per minute: in-process (``LocalPool``, ``--threads`` torch threads,
   default 1: as each actor, so the comparison is one loop against one actor) vs the Ray FID
   actor pool with 1 and with 2 actors (one CPU and one torch thread each);
   the three sides take turns, in a rotating order, for ``--rounds`` rounds;
2. first vs second scoring of a dataset: ``compute_fid`` against a real folder with an
   empty statistics store (Inception pass over the real images) and again (cached .npz);
3. the FID formula: torch-fidelity's ``fid_statistics_to_metric`` (O(d^3) eigenvalues)
   vs ``fid_from_features`` (exact, O(n d^2)) on the same features (``--skip-eig`` skips).

    python bench/fid_pool.py [--configs 6] [--rounds 2] [--eval-n 16] [--size 128]

Eval data: ``../shared/data/facades/val`` (labels -> photos, the pix2pix direction) when
present, else generated demo data. The supernet has random weights: the cost of scoring
does not depend on them. Set-up (extractor load, real statistics, starting actors) is
timed separately and not part of the rates, nor is one warm-up score per side and actor.
Ray is local and loopback-only; it gets 3 logical CPUs so both pools can exist at once,
but only one side runs at a time.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                      "shared", "data", "facades", "val")


def _eval_data(tmp: str, n: int, size: int):
    """(inputs folder, input crop, real folder, real crop, description)."""
    if os.path.isdir(SHARED):
        names = sorted(os.listdir(SHARED), key=lambda s: (len(s), s))[:n]
        folder = os.path.join(tmp, "facades-val")
        os.makedirs(folder)
        for name in names:
            shutil.copy(os.path.join(SHARED, name), folder)
        return folder, "right", folder, "left", f"facades/val (first {len(names)})"
    from ganc.data import make_demo_data
    data = os.path.join(tmp, "demo")
    make_demo_data("paired", 4, size, data, seed=0, n_test=n)
    folder = os.path.join(data, "val")
    return folder, "left", folder, "right", f"demo data ({n} images)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=6, help="configs per side per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--eval-n", type=int, default=16, help="eval images")
    ap.add_argument("--size", type=int, default=128, help="generator input size")
    ap.add_argument("--ngf", type=int, default=32, help="supernet width")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object (pool1_vs_inprocess, pool2_vs_pool1, ...)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the in-process side (1: as each pool actor)")
    ap.add_argument("--skip-eig", action="store_true",
                    help="skip timing torch-fidelity's O(d^3) FID formula")
    args = ap.parse_args(argv)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

    import ray

    from ganc.raylocal import init_local
    import torch

    from ganc import nn as gnn
    from ganc.config import FidConfig
    from ganc.metrics import (Scorer, compute_fid, fid_from_features, fid_from_stats,
                              stats_from_features)
    from ganc.metrics.pool import EvalSplit, FidPool, LocalPool, SubnetSpec
    from ganc.space import SearchSpace
    from ganc.store import open_store

    torch.set_num_threads(max(1, args.threads))     # fair: one thread per scoring loop
    tmp = tempfile.mkdtemp(prefix="ganc-bench-fid-")
    pools = []
    try:
        inp, inp_crop, real, real_crop, what = _eval_data(tmp, args.eval_n, args.size)
        split = EvalSplit.from_folders(inputs=inp, real=real, size=args.size,
                                       label="bench/val", input_crop=inp_crop,
                                       real_crop=real_crop)
        store = open_store(os.path.join(tmp, "store"))
        fid = FidConfig(batch_size=16, kid=False)
        torch.manual_seed(0)
        sup = gnn.build("super_mobile_resnet_9blocks", ngf=args.ngf).eval()
        widths = sorted({args.ngf, max(4, args.ngf // 2), max(4, args.ngf // 4)})
        space = SearchSpace.uniform("bench", widths)
        rng = random.Random(0)
        state = sup.state_dict()

        # ---- set-up (not in the rates)
        t0 = time.perf_counter()
        local = LocalPool(split, store=store, fid=fid)
        local.register_model("super", arch="super_mobile_resnet_9blocks", state=state,
                             ngf=args.ngf)
        setup = {"in-process": time.perf_counter() - t0}
        init_local(num_cpus=3, private=True, logging_level="ERROR")
        sides = {"in-process": local}
        for n in (1, 2):
            t0 = time.perf_counter()
            p = FidPool(split, num_actors=n, store=store, fid=fid)
            p.register_model("super", arch="super_mobile_resnet_9blocks", state=state,
                             ngf=args.ngf)
            p.info()                                   # every actor is up
            pools.append(p)
            name = f"pool x{n}"
            sides[name] = p
            setup[name] = time.perf_counter() - t0

        # ---- 1. configs per minute, sides in rotating order (after one warm-up score each:
        # building the model in every actor and TorchScript's first profiling runs)
        names = list(sides)
        for k in names:
            sides[k].score([SubnetSpec("super", str(space.largest()))] * 2 * pools[-1].num_actors)
        spent = {k: 0.0 for k in names}
        scores = {k: {} for k in names}
        for r in range(args.rounds):
            configs = [str(space.sample(rng)) for _ in range(args.configs)]
            order = names[r % len(names):] + names[:r % len(names)]
            line = []
            for k in order:
                t = time.perf_counter()
                res = sides[k].score([SubnetSpec("super", c) for c in configs])
                dt = time.perf_counter() - t
                spent[k] += dt
                for c, s in zip(configs, res):
                    scores[k][c] = s.fid
                line.append(f"{k} {dt:.1f}s")
            print(f"round {r}: " + ", ".join(line), flush=True,
                  file=sys.stderr if args.json else sys.stdout)
        common = set.intersection(*(set(v) for v in scores.values()))
        worst = max(abs(scores[k][c] - scores["in-process"][c]) / abs(scores["in-process"][c])
                    for k in names for c in common)

        # ---- 2. first vs second scoring of a dataset
        scorer = Scorer(local.state.extractor, local.real, local.state.inputs, batch_size=16)
        fake = torch.cat(list(scorer.generate(sup, space.largest())))
        cache = open_store(os.path.join(tmp, "stats-cache"))
        ext = local.state.extractor
        times = []
        for _ in range(2):
            t = time.perf_counter()
            dataset = compute_fid(split.real, fake, extractor=ext, store=cache,
                                  label="bench/val")
            times.append(time.perf_counter() - t)

        # ---- 3. FID formula
        feats = ext.features(fake)
        fast_t = time.perf_counter()
        fast = fid_from_features(feats.numpy(), local.real.mu, local.real.sigma)
        fast_t = time.perf_counter() - fast_t
        if not args.skip_eig:
            eig_t = time.perf_counter()
            mu, sigma = stats_from_features(feats.numpy())
            ref = fid_from_stats(mu, sigma, local.real.mu, local.real.sigma)
            eig_t = time.perf_counter() - eig_t
    finally:
        for p in pools:
            p.close()
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    n = args.configs * args.rounds
    base = 60 * n / spent["in-process"]
    out = {"inprocess_cfg_per_min": base, "pool1_cfg_per_min": 60 * n / spent["pool x1"],
           "pool2_cfg_per_min": 60 * n / spent["pool x2"],
           "pool1_vs_inprocess": spent["in-process"] / spent["pool x1"],
           "pool2_vs_pool1": spent["pool x1"] / spent["pool x2"],
           "inprocess_threads": torch.get_num_threads(), "configs": n, "eval": what,
           "size": args.size, "max_rel_fid_diff": worst,
           "setup_s": setup, "dataset_first_s": times[0], "dataset_cached_s": times[1]}
    if args.json:
        print(json.dumps(out))
        return out
    print(f"\nFID service: {what}, generator input {args.size}px, supernet ngf {args.ngf}, "
          f"{os.cpu_count()} CPUs, in-process torch threads {torch.get_num_threads()}")
    print("set-up (not in the rates): " + ", ".join(f"{k} {v:.1f}s" for k, v in setup.items()))
    base = 60 * n / spent["in-process"]
    print(f"{'side':>12} {'configs/min':>12} {'vs in-process':>14}")
    for k in names:
        rate = 60 * n / spent[k]
        print(f"{k:>12} {rate:>12.2f} {rate / base:>13.2f}x")
    print(f"pool x2 / pool x1: {spent['pool x1'] / spent['pool x2']:.2f}x; largest relative "
          f"FID difference between sides on the same config: {worst:.1e}")
    print(f"dataset scoring: first {times[0]:.2f}s (real statistics computed), second "
          f"{times[1]:.2f}s (cached): {times[0] / times[1]:.1f}x faster; FID {dataset['fid']:.3f}")
    if args.skip_eig:
        print(f"FID formula: fid_from_features {fast_t * 1000:.0f} ms (torch-fidelity's skipped)")
    else:
        print(f"FID formula: torch-fidelity {eig_t:.2f}s vs fid_from_features "
              f"{fast_t * 1000:.0f} ms: {eig_t / fast_t:.0f}x; values {ref:.6f} vs {fast:.6f}")


if __name__ == "__main__":
    main()
