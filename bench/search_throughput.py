"""Search throughput: configs scored per minute by a plain sequential in-process loop vs
Ray Tune trials on the FID actor pool, measured alternately in one run.

    python bench/search_throughput.py [--configs 8] [--rounds 2] [--actors 2] [--size 64]

Both sides score the same configs of the same supernet (random weights: the cost of
scoring does not depend on them) on the same generated eval split, with the same
Inception extractor and real statistics:

- sequential: ``LocalPool.score`` one config after another in this process;
- tune: one Tune trial per config (``ganc.search.driver.score_trial``), ``max_concurrent
  _trials`` = pool size, each trial scoring on a free pool actor.

Set-up (extractor load, real statistics, starting the pool actors) is timed separately
and not part of the rates. The rounds alternate which side goes first.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=8, help="configs scored per side per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--actors", type=int, default=2, help="FID pool actors")
    ap.add_argument("--size", type=int, default=64, help="eval image size")
    ap.add_argument("--eval-n", type=int, default=8, help="eval images")
    ap.add_argument("--ngf", type=int, default=16)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray

    from ganc.raylocal import init_local
    import torch
    from ray import tune

    from ganc import nn as gnn
    from ganc.config import FidConfig
    from ganc.data import make_demo_data
    from ganc.metrics.pool import EvalSplit, FidPool, LocalPool, SubnetSpec
    from ganc.search.cost import CostModel
    from ganc.search.driver import PoolLease, _trial_resources, score_trial
    from ganc.space import SearchSpace
    from ganc.store import open_store

    tmp = tempfile.mkdtemp(prefix="ganc-bench-")
    data = os.path.join(tmp, "data")
    make_demo_data("paired", 4, args.size, data, seed=0, n_test=args.eval_n)
    split = EvalSplit.from_folders(inputs=os.path.join(data, "val"), real=os.path.join(
        data, "val"), size=args.size, label="bench", input_crop="left", real_crop="right")
    store = open_store(os.path.join(tmp, "store"))
    fid = FidConfig(batch_size=8, kid=False)
    torch.manual_seed(0)
    sup = gnn.build("super_mobile_resnet_9blocks", ngf=args.ngf).eval()
    half = max(4, args.ngf // 2)
    space = SearchSpace.uniform("bench", sorted({args.ngf, half, max(4, half // 2)}))
    rng = random.Random(0)
    cost = CostModel(size=args.size)

    t0 = time.perf_counter()
    local = LocalPool(split, store=store, fid=fid)
    local.register_model("super", arch="super_mobile_resnet_9blocks", state=sup.state_dict(),
                         ngf=args.ngf)
    setup_local = time.perf_counter() - t0

    init_local(num_cpus=args.cpus, private=True, logging_level="ERROR")
    t0 = time.perf_counter()
    pool = FidPool(split, num_actors=args.actors, store=store, fid=fid)
    pool.register_model("super", arch="super_mobile_resnet_9blocks", state=sup.state_dict(),
                        ngf=args.ngf)
    lease = PoolLease(pool, "super")
    setup_pool = time.perf_counter() - t0
    trainable = tune.with_resources(
        tune.with_parameters(score_trial, lease=lease, cost=cost), _trial_resources())

    def sequential(configs):
        t = time.perf_counter()
        local.score([SubnetSpec("super", c) for c in configs])
        return time.perf_counter() - t

    def tuned(configs, i):
        t = time.perf_counter()
        res = tune.Tuner(
            trainable, param_space={"config": tune.grid_search(configs), "generation": 0},
            tune_config=tune.TuneConfig(max_concurrent_trials=args.actors, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=os.path.join(tmp, "tune"),
                                      name=f"round{i}", verbose=0)).fit()
        if res.errors:
            raise RuntimeError(f"tune round {i}: {res.errors[0]}")
        return time.perf_counter() - t

    rows = []
    try:
        for i in range(args.rounds):
            seen, configs = set(), []
            while len(configs) < args.configs:
                c = str(space.sample(rng))
                if c not in seen:
                    seen.add(c)
                    configs.append(c)
            order = ["sequential", "tune"] if i % 2 == 0 else ["tune", "sequential"]
            times = {}
            for side in order:
                times[side] = sequential(configs) if side == "sequential" else tuned(configs, i)
            rows.append(times)
            print(f"round {i}: " + ", ".join(f"{s} {times[s]:.1f}s" for s in order),
                  flush=True)
    finally:
        lease.close()
        pool.close()
        ray.shutdown()

    n = args.configs
    print(f"\nsearch throughput: {n} configs per side per round, {args.rounds} rounds, "
          f"{args.actors} FID actors, {args.eval_n} eval images at {args.size}px, "
          f"{args.cpus} CPUs")
    print(f"set-up (not in the rates): sequential {setup_local:.1f}s, pool {setup_pool:.1f}s")
    print(f"{'round':>5} {'sequential cfg/min':>19} {'tune+pool cfg/min':>18} {'ratio':>6}")
    for i, t in enumerate(rows):
        a, b = 60 * n / t["sequential"], 60 * n / t["tune"]
        print(f"{i:>5} {a:>19.1f} {b:>18.1f} {b / a:>6.2f}")
    a = 60 * n * len(rows) / sum(t["sequential"] for t in rows)
    b = 60 * n * len(rows) / sum(t["tune"] for t in rows)
    print(f"{'all':>5} {a:>19.1f} {b:>18.1f} {b / a:>6.2f}   (tune+pool / sequential)")


if __name__ == "__main__":
    main()
