"""Search throughput: configs scored per minute by a plain sequential in-process loop vs
the search machinery (one Tune trial per search, a generation per call to the FID pool's
dispatcher), measured alternately in one run.

    python bench/search_throughput.py [--configs 16] [--rounds 2] [--actors 2] [--json]
    python bench/search_throughput.py --noop [--json]

Fair comparison: both sides score the same configs (generation 0 of the evolution for a
seed per round: it needs no scores, so the configs are known before either side runs) of
the same supernet (random weights: the cost of scoring does not depend on them) on the same
generated eval split, with the same Inception extractor and real statistics, and one torch
thread per loop: the in-process loop runs with ``torch.set_num_threads(1)``, as each pool
actor does (one CPU each). So ``ratio`` = how many in-process loops the pool's N actors are
worth (2 actors, ideal 2.0).

- sequential: ``LocalPool.score`` one config after another in this process;
- pool: ``fit_searches`` with one evolution search (``population`` = the configs,
  one generation): the trial asks for the generation and scores it in one pool call.
  The rate counts the time the trial waited on the pool for its batch; the Tune experiment
  and trial start-up (paid once per search, not per config) are set-up, printed apart.

Set-up (extractor load, real statistics, starting the pool actors, one warm-up score per
side and actor) is not part of the rates. Rounds alternate which side goes first.

``--noop``: the pool is replaced by a scorer that returns at once, and a whole search
(``--population`` x ``--generations``, a checkpoint per generation) runs:
``driver_cfg_per_s`` is the ceiling of the search machinery itself in steady state (from
the first generation's report to the last), ``end_to_end_cfg_per_s`` includes starting
the Tune experiment and its trial.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class NoopClient:
    """Scores every spec at once with a made-up FID (the machinery's ceiling)."""

    def score(self, specs, kid=None, failures="raise"):
        from ganc.metrics.pool import Score
        return [Score(i, s, float(sum(int(w) for w in s.config.split("_"))))
                for i, s in enumerate(specs)]


def _settings(population: int, generations: int, seed: int):
    from ganc.config import SearchConfig
    return SearchConfig(population=population, generations=generations, seed=seed)


def _trainable(client, space, cost, settings):
    from ray import tune
    from ganc.search.driver import _trial_resources, search_trial
    return tune.with_resources(tune.with_parameters(
        search_trial, client=client, space=space, cost=cost, settings=settings),
        _trial_resources())


def noop(args, space, cost, tmp) -> dict:
    from ganc.search.driver import fit_searches, rows_of, searches_of
    settings = _settings(args.population, args.generations, 0)
    t = time.perf_counter()
    results, _ = fit_searches(_trainable(NoopClient(), space, cost, settings),
                              searches_of("evolution", [float("inf")]),
                              os.path.join(tmp, "noop"))
    dt = time.perf_counter() - t
    n = sum(len(rows_of(r)) for r in results)
    # steady state: from the first batch's report to the last (Tune's time_total_s per
    # report), i.e. without the experiment's and the trial's start-up
    df = results[0].metrics_dataframe
    span = float(df["time_total_s"].iloc[-1] - df["time_total_s"].iloc[0])
    steady = float(df["n_scored"].iloc[-1] - df["n_scored"].iloc[0])
    return {"driver_cfg_per_s": steady / span if span > 0 else float("inf"),
            "end_to_end_cfg_per_s": n / dt, "configs": n, "seconds": dt,
            "population": args.population, "generations": args.generations}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=16, help="configs per side per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--actors", type=int, default=2, help="FID pool actors")
    ap.add_argument("--size", type=int, default=64, help="eval image size")
    ap.add_argument("--eval-n", type=int, default=8, help="eval images")
    ap.add_argument("--ngf", type=int, default=16)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--noop", action="store_true", help="time the machinery alone")
    ap.add_argument("--population", type=int, default=100, help="--noop: population")
    ap.add_argument("--generations", type=int, default=10, help="--noop: generations")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not args.json:
        return _measure(args)
    # --json: stdout holds the one JSON object alone; whatever else is printed meanwhile
    # (Ray, Tune, progress) goes to stderr
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        out = _measure(args)
    print(json.dumps(out), file=stdout, flush=True)
    return out


def _measure(args) -> dict:
    """The measurement itself; returns its figures (printed as text unless --json)."""

    import ray
    import torch

    from ganc import nn as gnn
    from ganc.config import FidConfig
    from ganc.data import make_demo_data
    from ganc.metrics.pool import EvalSplit, FidPool, LocalPool, SubnetSpec
    from ganc.raylocal import init_local
    from ganc.search.cost import CostModel
    from ganc.search.driver import fit_searches, rows_of, searches_of
    from ganc.search.evolution import Evolution
    from ganc.space import SearchSpace
    from ganc.store import open_store

    tmp = tempfile.mkdtemp(prefix="ganc-bench-")
    half = max(4, args.ngf // 2)
    space = SearchSpace.uniform("bench", sorted({args.ngf, half, max(4, half // 2)},
                                                reverse=True))
    cost = CostModel(size=args.size)
    if args.noop:
        init_local(num_cpus=args.cpus, private=True, logging_level="ERROR",
                   log_to_driver=not args.json)
        try:
            out = noop(args, space, cost, tmp)
        finally:
            ray.shutdown()
        if not args.json:
            print(f"search machinery (no-op scorer): {out['driver_cfg_per_s']:.1f} configs/s "
                  f"in steady state; {out['configs']} configs in {out['seconds']:.1f}s end to "
                  "end")
        return out

    data = os.path.join(tmp, "data")
    make_demo_data("paired", 4, args.size, data, seed=0, n_test=args.eval_n)
    split = EvalSplit.from_folders(inputs=os.path.join(data, "val"), real=os.path.join(
        data, "val"), size=args.size, label="bench", input_crop="left", real_crop="right")
    store = open_store(os.path.join(tmp, "store"))
    fid = FidConfig(batch_size=8, kid=False)
    torch.manual_seed(0)
    torch.set_num_threads(1)            # one loop = one thread, as each pool actor
    sup = gnn.build("super_mobile_resnet_9blocks", ngf=args.ngf).eval()

    t0 = time.perf_counter()
    local = LocalPool(split, store=store, fid=fid)
    local.register_model("super", arch="super_mobile_resnet_9blocks", state=sup.state_dict(),
                         ngf=args.ngf)
    local.score([SubnetSpec("super", str(space.largest()))])           # warm-up
    setup_local = time.perf_counter() - t0

    init_local(num_cpus=args.cpus, private=True, logging_level="ERROR",
                   log_to_driver=not args.json)
    t0 = time.perf_counter()
    pool = FidPool(split, num_actors=args.actors, store=store, fid=fid)
    pool.register_model("super", arch="super_mobile_resnet_9blocks", state=sup.state_dict(),
                        ngf=args.ngf)
    pool.score([SubnetSpec("super", str(space.largest()))] * 2 * pool.num_actors)  # warm-up
    setup_pool = time.perf_counter() - t0

    def configs_of(seed):
        return Evolution(space, float("inf"), cost.macs, population=args.configs,
                         generations=1, seed=seed).members

    def sequential(configs):
        t = time.perf_counter()
        local.score([SubnetSpec("super", c) for c in configs])
        return time.perf_counter() - t, 0.0

    def searched(configs, seed):
        t = time.perf_counter()
        results, _ = fit_searches(
            _trainable(pool.client(), space, cost, _settings(args.configs, 1, seed)),
            searches_of("evolution", [float("inf")]), os.path.join(tmp, f"tune{seed}"))
        total = time.perf_counter() - t
        rows = [r for res in results for r in rows_of(res)]
        if sorted(r["config"] for r in rows) != sorted(configs):
            raise RuntimeError("the search scored other configs than the sequential loop")
        waited = sum(r["wall_s"] for r in rows)         # the trial's time in pool calls
        return waited, total - waited

    rows = []
    try:
        for i in range(args.rounds):
            configs = configs_of(i)
            order = ["sequential", "pool"] if i % 2 == 0 else ["pool", "sequential"]
            times = {}
            for side in order:
                times[side] = sequential(configs) if side == "sequential" else \
                    searched(configs, i)
            rows.append(times)
            if not args.json:
                print(f"round {i}: " + ", ".join(f"{s} {times[s][0]:.1f}s" for s in order)
                      + f" (+ {times['pool'][1]:.1f}s Tune experiment set-up)", flush=True)
    finally:
        pool.close()
        ray.shutdown()

    n = args.configs
    seq = 60 * n * len(rows) / sum(t["sequential"][0] for t in rows)
    pooled = 60 * n * len(rows) / sum(t["pool"][0] for t in rows)
    out = {"sequential_cfg_per_min": seq, "pool_cfg_per_min": pooled,
           "ratio": pooled / seq, "actors": pool.num_actors, "configs": n,
           "rounds": args.rounds, "size": args.size, "eval_n": args.eval_n,
           "tune_setup_s_per_search": sum(t["pool"][1] for t in rows) / len(rows),
           "setup_s": {"sequential": setup_local, "pool": setup_pool}}
    if not args.json:
        print(f"\nsearch throughput: {n} configs per side per round, {args.rounds} rounds, "
              f"{pool.num_actors} FID actors, {args.eval_n} eval images at {args.size}px")
        print(f"sequential {seq:.1f} cfg/min, pool {pooled:.1f} cfg/min: ratio "
              f"{pooled / seq:.2f}; Tune set-up per search "
              f"{out['tune_setup_s_per_search']:.1f}s (not in the rates)")
    return out


if __name__ == "__main__":
    main()
