"""Latency of a sub-network as a function of its channel config: a per-device lookup table.

MACs do not predict CPU latency well (depthwise convs and instance norms are memory-bound),
so the search can budget and rank sub-networks by latency on the runtime users deploy
with. Timing every candidate is slow and noisy; instead the network is cut into segments
whose shapes depend on at most two config positions:

=========  ==========================================  =================
segment    layers of ``model``                          config positions
=========  ==========================================  =================
stem       reflection pad, 7x7 conv, norm, ReLU         0
down1      3x3 stride-2 conv, norm, ReLU                0, 1
down2      3x3 stride-2 conv, norm, ReLU                1, 2
block<k>   one mobile residual block                    2, its group (3-5)
up1        transposed conv, norm, ReLU                  2, 6
up2        transposed conv, norm, ReLU                  6, 7
head       reflection pad, 7x7 conv, tanh               7
=========  ==========================================  =================

Every (segment kind, widths) pair of a search space is timed once on the runtime
(``eager`` or ``onnxruntime``) at a thread count and an input size, in rounds that time
every entry once in turn, in a new random order each round (load hits all entries
alike); an entry's latency is the :func:`statistic_for` of its rounds (the median of
thread CPU times single-threaded, the fastest wall time otherwise). A config's latency is
the sum of its segments' entries minus the per-call overhead of the runtime counted once
per extra segment. The table is cached in the store under
``latency/<device>/<runtime>-t<threads>-<size>px-<digest>.json`` (``device`` names the
CPU model, cores and library versions: :func:`ganc.runtime.device_id`), so it is measured
once per machine kind and runtime, and :func:`validate` compares it with whole-network
measurements (Spearman rank correlation, median relative error).
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import ConfigError
from ..space import ChannelConfig, SearchSpace
from .cost import BudgetError

TABLE_PREFIX = "latency"
OVERHEAD = "__overhead__"       # timing key of a trivial call (the runtime's own cost)
NET = "net:"                    # timing keys of whole networks
CHUNK = 48                      # entries timed side by side (bounds onnxruntime sessions)


# ---------------------------------------------------------------- segments
@dataclass(frozen=True)
class Segment:
    name: str              # stem, down1, down2, block1..block9, up1, up2, head
    kind: str              # table entry kind (every residual block is a "block")
    start: int             # layers model[start:stop] of SubMobileResnetGenerator
    stop: int
    positions: tuple       # config positions its shapes depend on


def segments(n_blocks: int = 9) -> List[Segment]:
    """The segments of ``sub_mobile_resnet_9blocks`` (layout: ``ganc.nn.mobile``)."""
    from ..nn.base import FIRST_BLOCK
    from ..nn.mobile import block_group
    stem, down1, down2 = 0, 4, 7                      # pad+conv+norm+relu, conv+norm+relu x2
    up1 = FIRST_BLOCK + n_blocks
    up2, head, end = up1 + 3, up1 + 6, up1 + 9
    segs = [Segment("stem", "stem", stem, down1, (0,)),
            Segment("down1", "down1", down1, down2, (0, 1)),
            Segment("down2", "down2", down2, FIRST_BLOCK, (1, 2))]
    segs += [Segment(f"block{i + 1}", "block", FIRST_BLOCK + i, FIRST_BLOCK + i + 1,
                     (2, block_group(i, n_blocks))) for i in range(n_blocks)]
    segs += [Segment("up1", "up1", up1, up2, (2, 6)), Segment("up2", "up2", up2, head, (6, 7)),
             Segment("head", "head", head, end, (7,))]
    return segs


def entry_key(seg: Segment, config) -> str:
    c = ChannelConfig.parse(config)
    return f"{seg.kind}:" + "_".join(str(c[p]) for p in seg.positions)


# ---------------------------------------------------------------- the table
@dataclass
class LatencyTable:
    """Per-segment latencies (ms) of one runtime, thread count and input size."""

    runtime: str
    threads: int
    size: int
    input_nc: int = 3
    output_nc: int = 3
    norm: str = "instance"
    n_blocks: int = 9
    choices: list = field(default_factory=list)      # widths per config position
    entries: Dict[str, float] = field(default_factory=dict)
    overhead_ms: float = 0.0                         # per-call cost of the runtime
    scale: float = 1.0                               # whole network = scale * segments
    calibration: list = field(default_factory=list)  # configs the scale was fitted on
    rounds: int = 0
    device: str = ""
    machine: dict = field(default_factory=dict)
    build_s: float = 0.0

    def keys(self, config) -> List[str]:
        return [entry_key(s, config) for s in segments(self.n_blocks)]

    def predict(self, config) -> float:
        """Predicted batch-1 latency (ms) of the sub-network ``config``."""
        keys = self.keys(config)
        missing = [k for k in keys if k not in self.entries]
        if missing:
            raise ConfigError(f"latency table ({self.runtime}, {self.size}px) has no entry "
                              f"{missing[0]!r} needed by config {ChannelConfig.parse(config)}; "
                              "it was built for another search space")
        return self.scale * self.raw(keys)

    __call__ = predict

    def raw(self, keys) -> float:
        """Sum of the segments' entries less the runtime's per-call overhead counted once
        per extra segment (a whole network is one call)."""
        return float(sum(self.entries[k] for k in keys) - (len(keys) - 1) * self.overhead_ms)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyTable":
        return cls(**d)

    def describe(self) -> dict:
        return {"runtime": self.runtime, "threads": self.threads, "size": self.size,
                "device": self.device, "entries": len(self.entries),
                "overhead_ms": self.overhead_ms, "rounds": self.rounds,
                "cpu": self.machine.get("cpu")}


def table_digest(choices, size, runtime, threads, input_nc, output_nc, norm, n_blocks) -> str:
    spec = {"choices": [list(map(int, c)) for c in choices], "size": int(size),
            "runtime": runtime, "threads": int(threads), "input_nc": int(input_nc),
            "output_nc": int(output_nc), "norm": norm, "n_blocks": int(n_blocks),
            "statistic": statistic_for(threads)}
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]


def table_key(space: SearchSpace, size: int, runtime: str, threads: int, input_nc=3,
              output_nc=3, norm="instance", n_blocks=9, device: Optional[str] = None) -> str:
    from ..runtime import device_id
    digest = table_digest(space.choices, size, runtime, threads, input_nc, output_nc, norm,
                          n_blocks)
    return (f"{TABLE_PREFIX}/{device or device_id()}/{runtime}-t{int(threads)}-{int(size)}px-"
            f"{digest}.json")


# ---------------------------------------------------------------- measuring
def _net(config, input_nc, output_nc, norm, n_blocks):
    from ..nn.mobile import SubMobileResnetGenerator
    return SubMobileResnetGenerator(config, input_nc, output_nc, norm, 0.0, n_blocks).eval()


def _segment_inputs(net, segs: Sequence[Segment], size: int, input_nc: int) -> dict:
    """Input shape of each segment (a forward pass on the meta device: no compute)."""
    import torch
    import torch.nn as nn
    meta = copy.deepcopy(net).to("meta")
    x = torch.empty(1, input_nc, size, size, device="meta")
    shapes = {}
    with torch.no_grad():
        for s in segs:
            shapes[s.name] = tuple(x.shape)
            x = nn.Sequential(*meta.model[s.start:s.stop])(x)
    return shapes


@dataclass
class _Timed:
    """One thing to time: a table entry (a segment of ``net``) or a whole network."""
    key: str
    net: object                     # the SubMobileResnetGenerator it comes from
    example: object                 # input tensor
    segment: Optional[Segment] = None

    @property
    def module(self):
        import torch.nn as nn
        if self.segment is None:
            return self.net
        return nn.Sequential(*self.net.model[self.segment.start:self.segment.stop]).eval()


def _onnx_of(item: _Timed, template: bytes, nets: Dict[str, bytes]) -> bytes:
    """ONNX of an entry, cut from its network's ONNX (one export per table: the others
    are the template with other weights, :func:`ganc.runtime.retarget_onnx`)."""
    import torch
    from ..runtime import OnnxError, module_onnx_bytes, onnx_layers, retarget_onnx
    cfg = str(item.net.config)
    if cfg not in nets:
        nc = item.net.model[1].in_channels
        nets[cfg] = retarget_onnx(template, item.net, torch.randn(1, nc, 16, 16))
    if item.segment is None:
        return nets[cfg]
    try:
        return onnx_layers(nets[cfg], item.segment.start, item.segment.stop,
                           tuple(item.example.shape))
    except OnnxError:
        return module_onnx_bytes(item.module, item.example)


def clock_for(threads: int) -> str:
    """Single-threaded tables time the thread's CPU time (other processes on a shared
    machine do not count), others wall time."""
    return "thread" if int(threads) == 1 else "wall"


def statistic_for(threads: int) -> str:
    """The statistic of an item's timed rounds. Wall time can only be slowed down by a
    shared machine, so its fastest round estimates the quiet cost. Thread CPU time under
    contention errs both ways (in a VM the kernel leaves the host's steal time out of a
    task's clock, and cache thrashing adds to it), and the minimum picks the most
    under-counted round: the median is kept. On this 2-core VM beside two cache-heavy
    jobs, the 20-network validation of ``tests/test_deploy.py`` (eager) gave Spearman
    0.89-0.97 with minima of thread time and 0.98-0.99 with medians of the same rounds
    (wall-time minima: 0.80-0.92)."""
    return "median_ms" if clock_for(threads) == "thread" else "min_ms"


def _time_items(items: List[_Timed], runtime: str, threads: int, rounds: int,
                log: Optional[Callable] = None, what: str = "entries",
                chunk: Optional[int] = CHUNK) -> Dict[str, float]:
    """Latency (ms, :func:`statistic_for` of ``rounds``) of each item on the runtime, plus
    :data:`OVERHEAD`: a trivial call through the same path, timed with every chunk (its
    median over chunks is kept). Eager torch gets its thread count once for the whole
    session (setting it per call costs more than a small layer)."""
    import torch
    import torch.nn as nn
    from ..runtime import onnx_bytes, relu_onnx, runner, time_alternating, torch_threads
    out: Dict[str, float] = {}
    overhead: List[float] = []
    nets: Dict[str, bytes] = {}
    template = None
    probe = torch.zeros(1, 1, 1, 1)
    per_call = threads if runtime == "onnxruntime" else 0
    step = chunk or max(1, len(items))
    stat = statistic_for(threads)
    with torch_threads(threads if runtime == "eager" else 0):
        for start in range(0, len(items), step):
            calls = {}
            for item in items[start:start + step]:
                onnx = None
                if runtime == "onnxruntime":
                    if template is None:      # dynamic sizes: checked small, timed at size
                        nc = item.net.model[1].in_channels
                        template = onnx_bytes(item.net, nc, 16)
                    onnx = _onnx_of(item, template, nets)
                f = runner(item.module, runtime, per_call, onnx=onnx)
                calls[item.key] = (lambda f=f, x=item.example: f(x))
            f = runner(nn.ReLU(), runtime, per_call,
                       onnx=relu_onnx(probe.shape) if runtime == "onnxruntime" else None)
            calls[OVERHEAD] = (lambda f=f: f(probe))
            res = time_alternating(calls, rounds=rounds, warmup=1, shuffle=True,
                                   clock=clock_for(threads))
            overhead.append(res.pop(OVERHEAD)[stat])
            out.update({k: r[stat] for k, r in res.items()})
            if log:
                log(f"[latency] {runtime}: timed {min(start + step, len(items))}/"
                    f"{len(items)} {what}")
    out[OVERHEAD] = sorted(overhead)[len(overhead) // 2]
    return out


def _entry_items(space: SearchSpace, size: int, input_nc: int, output_nc: int, norm: str,
                 n_blocks: int) -> List[_Timed]:
    """Every table entry of ``space``: a segment of the network whose other positions
    are at their smallest width."""
    import torch
    segs = segments(n_blocks)
    smallest = list(space.smallest())
    items, seen = [], set()
    for seg in segs:
        for widths in itertools.product(*(space.choices[p] for p in seg.positions)):
            key = f"{seg.kind}:" + "_".join(str(int(w)) for w in widths)
            if key in seen:
                continue
            seen.add(key)
            cfg = list(smallest)
            for p, w in zip(seg.positions, widths):
                cfg[p] = int(w)
            net = _net(ChannelConfig(tuple(cfg)), input_nc, output_nc, norm, n_blocks)
            shape = _segment_inputs(net, [x for x in segs if x.start <= seg.start], size,
                                    input_nc)[seg.name]
            items.append(_Timed(key, net, torch.randn(*shape), seg))
    return items


def _net_items(configs: Sequence, size: int, input_nc: int, output_nc: int, norm: str,
               n_blocks: int) -> List[_Timed]:
    import torch
    return [_Timed(NET + str(ChannelConfig.parse(c)),
                   _net(str(ChannelConfig.parse(c)), input_nc, output_nc, norm, n_blocks),
                   torch.randn(1, input_nc, size, size)) for c in configs]


def calibration_configs(space: SearchSpace) -> List[str]:
    """Whole networks timed with every table to fit its scale: the smallest, the middle
    and the largest sub-network of the space."""
    middle = ChannelConfig(tuple(c[len(c) // 2] for c in space.choices))
    return list(dict.fromkeys(str(c) for c in (space.smallest(), middle, space.largest())))


def _table(space, size, runtime, threads, input_nc, output_nc, norm, n_blocks, rounds,
           times: Dict[str, float], t0: float, calibration: Sequence[str]) -> LatencyTable:
    """The table of the timed entries, with ``scale`` fitted by least squares (through
    the origin) to the calibration networks: measured = scale * sum of segments. One
    parameter on three networks: a fit with an offset as well follows their noise."""
    from ..runtime import device_id, machine_info
    info = machine_info()
    entries = {k: v for k, v in times.items() if not k.startswith(NET) and k != OVERHEAD}
    table = LatencyTable(runtime=runtime, threads=int(threads), size=int(size),
                         input_nc=input_nc, output_nc=output_nc, norm=norm,
                         n_blocks=n_blocks, choices=[list(map(int, c)) for c in space.choices],
                         entries=entries, overhead_ms=times[OVERHEAD], rounds=int(rounds),
                         device=device_id(info), machine=info, calibration=list(calibration))
    xs = [table.raw(table.keys(c)) for c in calibration]
    ys = [times[NET + c] for c in calibration]
    sxx = sum(x * x for x in xs)
    if sxx > 0 and all(x > 0 for x in xs):
        table.scale = float(sum(x * y for x, y in zip(xs, ys)) / sxx)
    table.build_s = time.time() - t0
    return table


def _check(runtime, rounds):
    from ..runtime import check_runtime
    check_runtime(runtime, "latency runtime")
    if int(rounds) < 1:
        raise ConfigError(f"latency table rounds must be at least 1, got {rounds}")


def build_table(space: SearchSpace, size: int, *, runtime: str = "onnxruntime",
                threads: int = 1, input_nc: int = 3, output_nc: int = 3,
                norm: str = "instance", n_blocks: int = 9, rounds: int = 5,
                log: Optional[Callable] = None) -> LatencyTable:
    """Time every (segment kind, widths) entry of ``space`` on ``runtime``."""
    _check(runtime, rounds)
    t0 = time.time()
    calib = calibration_configs(space)
    items = (_entry_items(space, size, input_nc, output_nc, norm, n_blocks)
             + _net_items(calib, size, input_nc, output_nc, norm, n_blocks))
    times = _time_items(items, runtime, int(threads), int(rounds), log)
    return _table(space, size, runtime, threads, input_nc, output_nc, norm, n_blocks, rounds,
                  times, t0, calib)


def measure_configs(configs: Sequence, size: int, *, runtime: str = "onnxruntime",
                    threads: int = 1, input_nc: int = 3, output_nc: int = 3,
                    norm: str = "instance", n_blocks: int = 9, rounds: int = 5,
                    log: Optional[Callable] = None) -> List[float]:
    """Batch-1 latency (ms, :func:`statistic_for`) of each whole sub-network, measured
    alternately."""
    _check(runtime, rounds)
    items = _net_items(configs, size, input_nc, output_nc, norm, n_blocks)
    times = _time_items(items, runtime, int(threads), int(rounds), log, what="networks")
    return [times[NET + str(ChannelConfig.parse(c))] for c in configs]


def build_and_validate(space: SearchSpace, size: int, configs: Sequence, *,
                       runtime: str = "onnxruntime", threads: int = 1, input_nc: int = 3,
                       output_nc: int = 3, norm: str = "instance", n_blocks: int = 9,
                       rounds: int = 5, log: Optional[Callable] = None) -> tuple:
    """(table, validation): the table's entries and the whole networks ``configs`` timed
    side by side in the same rounds, so a changing machine load shifts both alike and
    the validation measures the model's error, not the load's drift. The validation
    covers ``configs`` whether or not they are among the calibration networks."""
    _check(runtime, rounds)
    t0 = time.time()
    calib = calibration_configs(space)
    nets = list(dict.fromkeys(calib + [str(ChannelConfig.parse(c)) for c in configs]))
    items = (_entry_items(space, size, input_nc, output_nc, norm, n_blocks)
             + _net_items(nets, size, input_nc, output_nc, norm, n_blocks))
    times = _time_items(items, runtime, int(threads), int(rounds), log,
                        what="entries and networks", chunk=None)
    table = _table(space, size, runtime, threads, input_nc, output_nc, norm, n_blocks,
                   rounds, times, t0, calib)
    measured = [times[NET + str(ChannelConfig.parse(c))] for c in configs]
    return table, validate(table, configs, measured)


def validate(table: LatencyTable, configs: Sequence, measured: Sequence[float]) -> dict:
    """Spearman rank correlation and median relative error of the table's predictions."""
    from scipy.stats import spearmanr
    pred = [table.predict(c) for c in configs]
    rho = float(spearmanr(pred, measured).statistic) if len(configs) > 1 else float("nan")
    errors = sorted(abs(p - m) / m for p, m in zip(pred, measured))
    mid = len(errors) // 2
    med = errors[mid] if len(errors) % 2 else (errors[mid - 1] + errors[mid]) / 2
    return {"n": len(configs), "spearman": rho, "median_rel_error": float(med),
            "predicted_ms": pred, "measured_ms": list(map(float, measured)),
            "configs": [str(ChannelConfig.parse(c)) for c in configs]}


def load_or_build(store, space: SearchSpace, size: int, *, runtime: str = "onnxruntime",
                  threads: int = 1, input_nc: int = 3, output_nc: int = 3,
                  norm: str = "instance", n_blocks: int = 9, rounds: int = 5,
                  device: Optional[str] = None, log: Optional[Callable] = None
                  ) -> tuple:
    """(table, key): the cached table of this machine (or ``device``) from ``store``,
    else one measured here and written there. A named ``device`` must be in the store."""
    from ..runtime import device_id
    key = table_key(space, size, runtime, threads, input_nc, output_nc, norm, n_blocks,
                    device)
    if store is not None and store.exists(key):
        return LatencyTable.from_dict(store.get_json(key)), key
    if device and device != device_id():
        raise ConfigError(f"no latency table for device {device!r} at {store.url(key)}; "
                          "build it on that machine with `ganc latency-table` "
                          "(or leave search.latency_device empty to measure this one)")
    if log:
        log(f"[latency] building the {runtime} table ({threads} threads, {size}px) of "
            f"search space {space.name!r} on this machine")
    table = build_table(space, size, runtime=runtime, threads=threads, input_nc=input_nc,
                        output_nc=output_nc, norm=norm, n_blocks=n_blocks, rounds=rounds,
                        log=log)
    if store is not None:
        store.put_json(key, table.to_dict())
    return table, key


# ---------------------------------------------------------------- the budget
def check_budget_ms(budget_ms, where: str = "search.budget_ms") -> float:
    """A latency budget must be a positive, finite number of milliseconds."""
    try:
        value = float(budget_ms)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number of milliseconds, got {budget_ms!r}"
                          ) from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where} must be a positive number of milliseconds, got "
                          f"{budget_ms!r}")
    return value


class LatencyBudget:
    """``fits(config)``: the table's predicted latency is within ``budget_ms``
    (picklable: Ray Tune pickles the searchers that hold it)."""

    def __init__(self, table: LatencyTable, budget_ms: float):
        self.table = table
        self.budget_ms = check_budget_ms(budget_ms)

    def __call__(self, config) -> bool:
        return self.table.predict(config) <= self.budget_ms


def check_latency_budget(space: SearchSpace, budget_ms: float, table: LatencyTable) -> None:
    """Fail in one line when the smallest sub-network does not fit ``budget_ms``."""
    budget_ms = check_budget_ms(budget_ms)
    smallest = table.predict(space.smallest())
    if smallest > budget_ms:
        raise BudgetError(
            f"search.budget_ms {budget_ms:g} is below the smallest sub-network of search "
            f"space {space.name!r}: {space.smallest()} takes {smallest:.3g} ms on "
            f"{table.runtime} ({table.threads} threads, {table.size}px) by the latency table")


__all__ = ["Segment", "segments", "entry_key", "LatencyTable", "build_table",
           "measure_configs", "build_and_validate", "validate", "load_or_build", "table_key", "LatencyBudget",
           "check_budget_ms", "check_latency_budget"]
