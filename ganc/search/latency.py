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
once per machine kind and runtime, and :func:`ganc.search.latency_build.validate` compares
it with whole-network measurements (Spearman rank correlation, median relative error).

This module holds the table, its keys and the latency budget; the timing that builds a
table is :mod:`ganc.search.latency_build`.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from ..errors import ConfigError
from ..nn.base import FIRST_BLOCK
from ..nn.mobile import block_group
from ..runtime import device_id
from ..space import ChannelConfig, SearchSpace
from .cost import BudgetError

TABLE_PREFIX = "latency"


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
    digest = table_digest(space.choices, size, runtime, threads, input_nc, output_nc, norm,
                          n_blocks)
    return (f"{TABLE_PREFIX}/{device or device_id()}/{runtime}-t{int(threads)}-{int(size)}px-"
            f"{digest}.json")



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


__all__ = ["TABLE_PREFIX", "Segment", "segments", "entry_key", "LatencyTable", "table_digest",
           "table_key", "clock_for", "statistic_for", "check_budget_ms", "LatencyBudget",
           "check_latency_budget"]
