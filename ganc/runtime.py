"""The runtimes that run a generator, and the machine they run on (no Ray).

- :func:`runner` / :func:`time_alternating`: a model on a runtime (``eager``,
  ``onnxruntime`` or ``inductor``: ``torch.compile`` with weight freezing, CPU only) at a
  thread count, and medians of calls measured alternately.
- :func:`machine_info`: the CPU, core count and library versions a latency was measured on.

The deployed forms themselves are made in :mod:`ganc.deploy` (``torch.export``, ONNX) and
run by onnxruntime through :mod:`ganc.onnxrun`.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import platform
import random
import statistics
import time
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn as nn

from .deploy import onnx_bytes
from .errors import ConfigError, GancError, one_line
from .extras import draw_for
from .onnxrun import OnnxModule

RUNTIMES = ("eager", "onnxruntime")   # what latency tables, the card and the search time
# ``ganc profile`` and bench/latency.py also run a model compiled by torch's inductor
# (compiled once per model and shape: too slow to build a per-layer table with).
PROFILE_RUNTIMES = RUNTIMES + ("inductor",)


def check_runtime(name: str, where: str = "--runtime",
                  allowed: Sequence[str] = RUNTIMES) -> str:
    if name not in allowed:
        raise ConfigError(f"{where} {name!r} is not one of: {', '.join(allowed)}")
    return name


def check_threads(threads, where: str = "--threads") -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ConfigError(f"{where} must be a whole number >= 0 (0: the runtime's default), "
                          f"got {threads!r}")
    return threads


def default_threads() -> int:
    """Threads a runtime uses when told 0: torch's default (one per physical core)."""
    return int(torch.get_num_threads())


@contextlib.contextmanager
def torch_threads(n: int):
    """Run eager torch with ``n`` intra-op threads (0: unchanged), restored afterwards."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------- runners and timing
def deploy_eager(model: nn.Module) -> nn.Module:
    """The eager model as ganc runs it on CPU for latency: a copy in eval mode."""
    return copy.deepcopy(model).cpu().eval()


def inductor_runner(model: nn.Module, example: torch.Tensor, threads: int = 0) -> Callable:
    """``fn(x) -> y``: ``model`` compiled by ``torch.compile`` (inductor) for inference on
    the CPU, with weight freezing (constant folding, conv weights prepacked for oneDNN).
    It is compiled here, on ``example``, at ``threads`` threads (inductor's C++ kernels
    keep the thread count they were compiled with); another input shape compiles again.
    Needs a C++ compiler, as inductor does on the CPU."""
    import torch._inductor.config as inductor_config  # deferred: loads inductor
    net = deploy_eager(model)
    compiled = torch.compile(net, dynamic=False)
    try:
        with inductor_config.patch(freezing=True), torch_threads(threads), \
                torch.inference_mode():
            compiled(example.cpu(), **draw_for(model, example.shape[0], seed=0))
    except Exception as e:
        raise GancError(f"--runtime inductor: torch.compile failed ({type(e).__name__}: "
                        f"{one_line(e)}); it needs a C++ compiler on the PATH") from None

    def run(x, **extra):
        with inductor_config.patch(freezing=True), torch_threads(threads), \
                torch.inference_mode():
            return compiled(x, **extra)
    return run


def runner(model: nn.Module, runtime: str, threads: int = 0, input_nc: int = 3,
           size: int = 256, level: str = "all", onnx: Optional[bytes] = None) -> Callable:
    """``fn(x) -> y`` running ``model`` on ``runtime`` with ``threads`` intra-op threads
    (0: the runtime's default). ``onnx`` reuses already exported bytes. ``inductor`` is
    compiled for a batch of 1 at ``size`` (``s`` or ``(h, w)``)."""
    check_runtime(runtime, allowed=PROFILE_RUNTIMES)
    h, w = (size, size) if isinstance(size, int) else size
    if runtime == "onnxruntime":
        data = onnx if onnx is not None else onnx_bytes(model, input_nc, min(h, w))
        return OnnxModule(data, threads, level)
    if runtime == "inductor":
        return inductor_runner(model, torch.zeros(1, int(input_nc), int(h), int(w)), threads)
    net = deploy_eager(model)

    def run(x, **extra):
        with torch_threads(threads), torch.inference_mode():
            return net(x, **extra)
    return run


CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


def time_alternating(calls: Dict[str, Callable[[], object]], rounds: int = 7,
                     warmup: int = 2, shuffle: bool = False, seed: int = 0,
                     clock: str = "wall") -> Dict[str, dict]:
    """Median / min time (ms) of each zero-argument call, measured in rounds that make
    every call once in turn, so machine noise hits all of them alike. ``shuffle``: a new
    order every round, so a burst of load does not always hit the same neighbours.
    ``clock``: ``wall`` (latency), or ``thread``: the CPU time of the calling thread,
    which equals the latency of single-threaded work on a quiet machine and leaves out
    the time other processes hold the core."""
    now = CLOCKS[clock]
    if rounds < 1:
        raise ConfigError(f"repeats must be at least 1, got {rounds}")
    times = {k: [] for k in calls}
    for _ in range(max(0, warmup)):
        for f in calls.values():
            f()
    order = list(calls)
    rng = random.Random(seed)
    for _ in range(rounds):
        if shuffle:
            rng.shuffle(order)
        for k in order:
            f = calls[k]
            t0 = now()
            f()
            times[k].append((now() - t0) * 1e3)
    return {k: {"median_ms": statistics.median(v), "min_ms": min(v), "repeats": rounds}
            for k, v in times.items()}


def latency_by_runtime(model: nn.Module, input_nc: int, size: int,
                       runtimes: Sequence[str] = RUNTIMES, threads: Sequence[int] = (1, 0),
                       rounds: int = 5, onnx: Optional[bytes] = None) -> dict:
    """``{runtime: {str(threads): median_ms}}`` at batch 1, all variants measured
    alternately (thread count 0 is reported as the number it resolves to)."""
    fns, names = {}, {}
    for rt in runtimes:
        for t in dict.fromkeys(threads):
            n = int(t) or default_threads()
            key = f"{rt}/{n}"
            if key in fns:
                continue
            fns[key] = runner(model, rt, n, input_nc, size, onnx=onnx)
            names[key] = (rt, str(n))
    x = torch.randn(1, input_nc, size, size)
    extra = draw_for(model, 1, seed=0)        # a MUNIT style code (ganc.extras), or none
    res = time_alternating({k: (lambda f=f: f(x, **extra)) for k, f in fns.items()},
                           rounds=rounds)
    out: dict = {}
    for key, (rt, n) in names.items():
        out.setdefault(rt, {})[n] = res[key]["median_ms"]
    return out



# ---------------------------------------------------------------- the machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """The CPU and software a latency was measured with."""
    try:
        import onnxruntime  # deferred: heavy, only its version
        ort_version = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        ort_version = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count()
    return {"cpu": _cpu_model(), "arch": platform.machine(), "logical_cores": os.cpu_count(),
            "usable_cores": usable, "torch_threads": default_threads(),
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": ort_version}


def device_id(info: Optional[dict] = None) -> str:
    """A short name of a machine kind for caching latency tables: CPU model, cores and
    library versions (not the host name, so identical nodes share one table)."""
    info = info or machine_info()
    keys = ("cpu", "arch", "usable_cores", "torch", "onnxruntime")
    digest = hashlib.sha1(json.dumps({k: info.get(k) for k in keys}, sort_keys=True)
                          .encode()).hexdigest()[:12]
    return f"{info.get('arch', 'cpu')}-{info.get('usable_cores')}c-{digest}"


__all__ = ["RUNTIMES", "PROFILE_RUNTIMES", "check_runtime", "check_threads", "default_threads",
           "torch_threads", "deploy_eager", "inductor_runner", "runner", "time_alternating",
           "latency_by_runtime", "machine_info", "device_id"]
