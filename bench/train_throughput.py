"""Images/s of the Ray Train training loop vs the same loop without Ray, same threads.

Both sides run the identical per-worker function (``ganc.train.teacher.teacher_loop`` or
``ganc.train.supernet.supernet_loop``) on the same generated data, sizes and checkpoint
cadence, with the same number of torch threads:

- ray:   ``TorchTrainer`` with one worker holding THREADS CPUs (checkpoints through Ray
         Train's storage into the store);
- plain: the loop called in this process (checkpoints written straight to the store).

Rounds alternate plain, ray, plain, ray, ... in one run so machine load affects both
alike. Reported: the loop's steady-state images/s (log windows after the first, i.e.
excluding model build and warm-up) and the end-to-end wall time per job (Ray's includes
starting the worker group). Prints the ratios ray / plain.

    python bench/train_throughput.py                      # teacher loop, 3 rounds
    python bench/train_throughput.py --stage supernet --rounds 2 --steps 60
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _threads_wrapper(loop):
    def run(spec):
        import torch
        torch.set_num_threads(int(spec["bench_threads"]))
        loop(spec)
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", choices=["teacher", "supernet"], default="teacher")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=80, help="training steps per job")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--ngf", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--checkpoint-every", type=int, default=40)
    ap.add_argument("--worker-niceness", type=int, default=None,
                    help="RAY_worker_niceness for the Ray started here (Ray's default runs "
                         "workers at nice 15, which starves them on a shared, loaded "
                         "machine; 0 gives them the plain loop's priority)")
    args = ap.parse_args(argv)
    if args.worker_niceness is not None:
        os.environ["RAY_worker_niceness"] = str(args.worker_niceness)

    import torch
    from ganc.config import from_dict
    from ganc.context import open_context
    from ganc.raylocal import init_local
    from ganc.train import launch
    from ganc.train.supernet import supernet_loop
    from ganc.train.teacher import teacher_loop, train_teacher

    work = tempfile.mkdtemp(prefix="ganc-bench-train-")
    os.environ.setdefault("GANC_CACHE", os.path.join(work, "cache"))
    store = os.path.join(work, "store")
    base = {
        "seed": 0,
        "data": {"kind": "aligned", "demo_n": 32, "demo_size": args.size,
                 "load_size": args.size + args.size // 8, "crop_size": args.size},
        "model": {"teacher_ngf": args.ngf, "student_ngf": args.ngf, "ndf": args.ngf},
        "teacher": {"steps": args.steps, "log_every": args.log_every,
                    "checkpoint_every": args.checkpoint_every, "eval_every": -1},
        "distill": {"steps": args.steps, "log_every": args.log_every,
                    "checkpoint_every": args.checkpoint_every, "eval_every": 0,
                    "space_widths": [args.ngf, args.ngf // 2]},
        "scale": {"workers": 1, "cpus_per_worker": args.threads, "use_gpu": "false"},
    }
    torch.set_num_threads(args.threads)
    started = init_local(max(os.cpu_count() or 1, args.threads), private=True)
    results = {"plain": [], "ray": []}
    try:
        if args.stage == "supernet":  # one teacher for every supernet job
            tcfg = from_dict({**base, "name": "teacher", "teacher": {**base["teacher"],
                                                                    "steps": 10}})
            train_teacher(tcfg, store, runner="local")
            base["model"]["teacher_weights"] = os.path.join(
                store, "runs", "teacher", "teacher", "latest_net_G.pth")
        for r in range(args.rounds):
            for mode in ("plain", "ray"):
                cfg = from_dict({**base, "name": f"{mode}-{r}"})
                loop = teacher_loop if args.stage == "teacher" else supernet_loop
                t0 = time.perf_counter()
                ctx = open_context(cfg, store)
                if args.stage == "teacher":
                    res = launch.run_stage("teacher", _threads_wrapper(loop), ctx,
                                           runner="local" if mode == "plain" else None,
                                           extra_spec={"bench_threads": args.threads})
                else:
                    res = _supernet(ctx, mode, args.threads, launch, loop)
                wall = time.perf_counter() - t0
                windows = [h["images_per_s"] for h in res["history"]][1:]
                ips = statistics.median(windows)
                results[mode].append((ips, wall))
                print(f"round {r} {mode:5s}: loop {ips:7.2f} img/s (median of "
                      f"{len(windows)} windows), job wall {wall:6.1f}s", flush=True)
    finally:
        if started:
            import ray
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    p_ips = statistics.median(x[0] for x in results["plain"])
    r_ips = statistics.median(x[0] for x in results["ray"])
    p_wall = statistics.median(x[1] for x in results["plain"])
    r_wall = statistics.median(x[1] for x in results["ray"])
    nice = os.environ.get("RAY_worker_niceness", "Ray default (15)")
    print(f"\n{args.stage} loop, {args.size}px, ngf {args.ngf}, {args.steps} steps, "
          f"{args.threads} threads, {args.rounds} alternating rounds, Ray worker niceness "
          f"{nice}, load average at the end {os.getloadavg()[0]:.1f}:")
    print(f"  loop images/s   plain {p_ips:.2f}   ray {r_ips:.2f}   ratio ray/plain "
          f"{r_ips / p_ips:.3f}")
    print(f"  job wall time   plain {p_wall:.1f}s  ray {r_wall:.1f}s  ratio ray/plain "
          f"{r_wall / p_wall:.2f}")
    return 0


def _supernet(ctx, mode, threads, launch, loop):
    from ganc.train.supernet import resolve_teacher, search_space_of
    extra = {"search_space": search_space_of(ctx.cfg).to_dict(),
             "teacher": resolve_teacher(ctx.cfg, ctx.run), "bench_threads": threads}
    return launch.run_stage("supernet", _threads_wrapper(loop), ctx,
                            runner="local" if mode == "plain" else None, extra_spec=extra)


if __name__ == "__main__":
    sys.exit(main())
