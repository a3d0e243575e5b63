"""Building latency tables (:mod:`ganc.search.latency`): timing a search space's segments
and whole networks on a runtime, fitting the table's scale, validating it, caching it.

Every (segment kind, widths) entry and every calibration network is timed side by side in
rounds (:func:`ganc.runtime.time_alternating`, a new random order each round); on
onnxruntime each entry is cut from its network's export (:mod:`ganc.onnxgraph`: one
export per table). :func:`load_or_build` reads a cached table from the store or builds
and writes it.
"""
from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from ..deploy import module_onnx_bytes, onnx_bytes
from ..errors import ConfigError
from ..nn.mobile import SubMobileResnetGenerator
from ..onnxrun import OnnxError
from ..runtime import (check_runtime, device_id, machine_info, runner, time_alternating,
                       torch_threads)
from ..space import ChannelConfig, SearchSpace
from .latency import LatencyTable, Segment, clock_for, segments, statistic_for, table_key

OVERHEAD = "__overhead__"       # timing key of a trivial call (the runtime's own cost)
NET = "net:"                    # timing keys of whole networks
CHUNK = 48                      # entries timed side by side (bounds onnxruntime sessions)


def _net(config, input_nc, output_nc, norm, n_blocks):
    return SubMobileResnetGenerator(config, input_nc, output_nc, norm, 0.0, n_blocks).eval()


def _segment_inputs(net, segs: Sequence[Segment], size: int, input_nc: int) -> dict:
    """Input shape of each segment (a forward pass on the meta device: no compute)."""
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
        if self.segment is None:
            return self.net
        return nn.Sequential(*self.net.model[self.segment.start:self.segment.stop]).eval()


def _onnx_of(item: _Timed, template: bytes, nets: Dict[str, bytes]) -> bytes:
    """ONNX of an entry, cut from its network's ONNX (one export per table: the others
    are the template with other weights, :func:`ganc.onnxgraph.retarget_onnx`)."""
    from ..onnxgraph import onnx_layers, retarget_onnx  # deferred: onnx (onnxruntime only)
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



def _time_items(items: List[_Timed], runtime: str, threads: int, rounds: int,
                log: Optional[Callable] = None, what: str = "entries",
                chunk: Optional[int] = CHUNK) -> Dict[str, float]:
    """Latency (ms, :func:`statistic_for` of ``rounds``) of each item on the runtime, plus
    :data:`OVERHEAD`: a trivial call through the same path, timed with every chunk (its
    median over chunks is kept). Eager torch gets its thread count once for the whole
    session (setting it per call costs more than a small layer)."""
    from ..onnxgraph import relu_onnx  # deferred: onnx (onnxruntime tables only)
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
    from scipy.stats import spearmanr  # deferred: scipy is slow to import
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


__all__ = ["OVERHEAD", "NET", "CHUNK", "calibration_configs", "build_table", "measure_configs",
           "build_and_validate", "validate", "load_or_build"]
