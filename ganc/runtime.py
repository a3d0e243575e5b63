"""Deployed forms of a generator and the runtimes that run them (no Ray).

- :func:`export_program`: ``torch.export`` of a generator with a dynamic batch and image
  size (height and width multiples of 4, as the two stride-2 downsamplings need);
  :func:`pt2_bytes` saves it as ``.pt2`` (what torch recommends in place of TorchScript).
- :func:`onnx_bytes`: the same program as ONNX (opset :data:`OPSET`), through
  ``torch.onnx.export`` (the torch.export-based exporter).
- :func:`deploy_artifacts`: both, checked against the eager module (max abs difference on
  two input shapes, through onnxruntime for the ONNX file).
- :class:`OnnxModule`: an ONNX file run by onnxruntime behind a ``module(x) -> y`` call, so
  ``ganc translate`` and ``ganc profile`` treat it like a torch generator.
- :func:`runner` / :func:`time_alternating`: a model on a runtime (``eager``,
  ``onnxruntime`` or ``inductor``: ``torch.compile`` with weight freezing, CPU only) at a
  thread count, and medians of calls measured alternately.
- :func:`machine_info`: the CPU, core count and library versions a latency was measured on.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import platform
import statistics
import time
import warnings
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn as nn

from .errors import ConfigError, GancError

RUNTIMES = ("eager", "onnxruntime")   # what latency tables, the card and the search time
# ``ganc profile`` and bench/latency.py also run a model compiled by torch's inductor
# (compiled once per model and shape: too slow to build a per-layer table with).
PROFILE_RUNTIMES = RUNTIMES + ("inductor",)
OPSET = 20                      # ONNX opset of every exported model
ONNX_TOLERANCE = 1e-3           # an export whose outputs differ more from eager fails
ORT_LEVELS = ("disable", "basic", "extended", "all")
SIDE_MULTIPLE = 4               # image sides must be multiples of this


class OnnxError(GancError):
    """A file that is not an ONNX model onnxruntime can run, or an export that failed."""


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


# ---------------------------------------------------------------- export
def _example(input_nc: int, size: int) -> torch.Tensor:
    # batch 2: an example batch of 1 makes torch.export specialise the batch dimension
    return torch.zeros(2, int(input_nc), int(size), int(size))


def _dynamic_shapes(model: nn.Module):
    import inspect
    name = next(iter(inspect.signature(model.forward).parameters))
    batch = torch.export.Dim("batch", min=1, max=4096)
    h = torch.export.Dim("h", min=2, max=4096)
    w = torch.export.Dim("w", min=2, max=4096)
    return {name: {0: batch, 2: SIDE_MULTIPLE * h, 3: SIDE_MULTIPLE * w}}


def export_program(model: nn.Module, input_nc: int, size: int):
    """``torch.export`` of ``model`` (eval mode, CPU) with dynamic batch, height and width."""
    model = model.eval()
    try:
        with torch.no_grad():
            return torch.export.export(model, (_example(input_nc, size),),
                                       dynamic_shapes=_dynamic_shapes(model))
    except Exception as e:  # pragma: no cover - an architecture torch.export cannot trace
        raise OnnxError(f"torch.export of {type(model).__name__} failed: "
                        f"{str(e).strip().splitlines()[0][:200]}") from None


def pt2_bytes(program) -> bytes:
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def onnx_bytes(model_or_program, input_nc: int, size: int, dynamic: bool = True) -> bytes:
    """ONNX (opset :data:`OPSET`) of a module or an exported program; input ``input``,
    output ``output``. ``dynamic``: batch, height and width dynamic (a module is exported
    through :func:`export_program`); else the shape of batch 1 at ``size``."""
    if isinstance(model_or_program, nn.Module):
        model_or_program = model_or_program.eval()
        if dynamic:
            model_or_program = export_program(model_or_program, input_nc, size)
    args = (_example(input_nc, size)[:1],)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            prog = torch.onnx.export(model_or_program, args, dynamo=True, verbose=False,
                                     opset_version=OPSET, input_names=["input"],
                                     output_names=["output"], external_data=False)
        except Exception as e:  # pragma: no cover
            raise OnnxError(f"ONNX export failed: {str(e).strip().splitlines()[0][:200]}"
                            ) from None
    return prog.model_proto.SerializeToString()


def module_onnx_bytes(module: nn.Module, example: torch.Tensor) -> bytes:
    """ONNX of a module at one fixed input shape (the latency table's layers)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(module.eval(), (example,), dynamo=True, verbose=False,
                                 opset_version=OPSET, input_names=["input"],
                                 output_names=["output"], external_data=False)
    return prog.model_proto.SerializeToString()


def check_shapes(input_nc: int, size: int) -> list:
    """Input shapes an export is checked on: batch 1 at the eval size, and batch 2 at a
    non-square size (proves the batch and the sides are dynamic)."""
    half = max(2 * SIDE_MULTIPLE, (size // 2) // SIDE_MULTIPLE * SIDE_MULTIPLE)
    return [(1, input_nc, size, size), (2, input_nc, half, size)]


def max_abs_diff(run: Callable, model: nn.Module, shapes: Sequence[tuple], seed: int = 0
                 ) -> float:
    """Largest |run(x) - model(x)| over random inputs of ``shapes``."""
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.no_grad():
        for shape in shapes:
            x = torch.rand(*shape, generator=g) * 2 - 1
            ref = model(x)
            out = run(x)
            if tuple(out.shape) != tuple(ref.shape):
                raise OnnxError(f"exported model returns shape {tuple(out.shape)} for input "
                                f"{tuple(shape)}; eager returns {tuple(ref.shape)}")
            worst = max(worst, float((out - ref).abs().max()))
    return worst


def deploy_artifacts(model: nn.Module, input_nc: int, size: int) -> dict:
    """``model.pt2`` and ``model.onnx`` bytes of a generator, each checked against eager.

    Returns ``{"pt2": bytes, "onnx": bytes, "card": {...}}``; the card part states the
    opset, the dynamic axes, the shapes checked and the max abs differences. Raises
    :class:`OnnxError` when a difference exceeds :data:`ONNX_TOLERANCE`."""
    import onnxruntime
    model = copy.deepcopy(model).cpu().eval()
    program = export_program(model, input_nc, size)
    shapes = check_shapes(input_nc, size)
    pt2_diff = max_abs_diff(program.module(), model, shapes)
    data = onnx_bytes(program, input_nc, size)
    ort_diff = max_abs_diff(OnnxModule(data, threads=1), model, shapes)
    for what, diff in (("model.pt2", pt2_diff), ("model.onnx", ort_diff)):
        if not diff <= ONNX_TOLERANCE:
            raise OnnxError(f"{what} differs from the eager model by {diff:.3g} "
                            f"(> {ONNX_TOLERANCE:g}) on inputs {shapes}")
    card = {"onnx": {"file": "model.onnx", "opset": OPSET, "input": "input",
                     "output": "output",
                     "dynamic_axes": {"0": "batch", "2": f"height ({SIDE_MULTIPLE}*k)",
                                      "3": f"width ({SIDE_MULTIPLE}*k)"},
                     "checked_shapes": [list(s) for s in shapes],
                     "max_abs_diff_vs_eager": ort_diff,
                     "checked_with": f"onnxruntime {onnxruntime.__version__}"},
            "pt2": {"file": "model.pt2", "format": "torch.export (torch.export.load)",
                    "checked_shapes": [list(s) for s in shapes],
                    "max_abs_diff_vs_eager": pt2_diff, "torch": torch.__version__}}
    return {"pt2": pt2_bytes(program), "onnx": data, "card": card}


# ---------------------------------------------------------------- onnxruntime
def _ort_level(level: str):
    import onnxruntime as ort
    if level not in ORT_LEVELS:
        raise ConfigError(f"onnxruntime optimisation level {level!r} is not one of: "
                          + ", ".join(ORT_LEVELS))
    L = ort.GraphOptimizationLevel
    return {"disable": L.ORT_DISABLE_ALL, "basic": L.ORT_ENABLE_BASIC,
            "extended": L.ORT_ENABLE_EXTENDED, "all": L.ORT_ENABLE_ALL}[level]


def ort_session(model, threads: int = 0, level: str = "all", where: str = "ONNX model"):
    """An onnxruntime CPU session on ONNX bytes or a file path; ``threads`` 0: default."""
    import onnxruntime as ort
    ort.set_default_logger_severity(3)
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = _ort_level(level)
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxError(f"{where} cannot be loaded by onnxruntime: {msg[:200]}") from None


class OnnxModule:
    """An ONNX generator run by onnxruntime, called like a torch module: ``m(x) -> y``
    on CPU float32 tensors."""

    def __init__(self, model, threads: int = 0, level: str = "all", where: str = "ONNX model"):
        self.session = ort_session(model, threads, level, where)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(self.session.get_outputs()) < 1:
            raise OnnxError(f"{where} must take one image tensor; it has {len(inputs)} inputs")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        if len(shape) != 4:
            raise OnnxError(f"{where} takes a rank-{len(shape)} input; a generator takes "
                            "NCHW images")
        self.input_nc = shape[1] if isinstance(shape[1], int) else None
        self.threads = int(threads)
        self.where = where

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            out = self.session.run(None, {self.input_name: arr})[0]
        except Exception as e:
            raise OnnxError(f"{self.where} failed on an input of shape {tuple(arr.shape)}: "
                            f"{str(e).strip().splitlines()[0][:200]}") from None
        return torch.from_numpy(out)

    def eval(self):
        return self

    def to(self, device):
        if torch.device(device).type != "cpu":
            raise ConfigError(f"ONNX models run on the CPU (onnxruntime's CPU provider), "
                              f"not {device}")
        return self


def load_onnx(path, threads: int = 0, level: str = "all") -> OnnxModule:
    """An ONNX file as an :class:`OnnxModule`; a file that is not ONNX fails in one line."""
    import onnx
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OnnxError(f"ONNX file not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        proto = onnx.load_model_from_string(data)
        if not proto.graph.node:
            raise ValueError("no graph")
    except Exception:
        raise OnnxError(f"{path} is not an ONNX model (it does not parse as an ONNX "
                        "ModelProto with a graph)") from None
    return OnnxModule(data, threads, level, where=path)


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
    import torch._inductor.config as inductor_config
    net = deploy_eager(model)
    compiled = torch.compile(net, dynamic=False)
    try:
        with inductor_config.patch(freezing=True), torch_threads(threads), \
                torch.inference_mode():
            compiled(example.cpu())
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise GancError(f"--runtime inductor: torch.compile failed ({type(e).__name__}: "
                        f"{first}); it needs a C++ compiler on the PATH") from None

    def run(x):
        with inductor_config.patch(freezing=True), torch_threads(threads), \
                torch.inference_mode():
            return compiled(x)
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

    def run(x):
        with torch_threads(threads), torch.inference_mode():
            return net(x)
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
    import random
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
    res = time_alternating({k: (lambda f=f: f(x)) for k, f in fns.items()}, rounds=rounds)
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
        import onnxruntime
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


__all__ = ["RUNTIMES", "PROFILE_RUNTIMES", "OPSET", "ONNX_TOLERANCE", "OnnxError",
           "OnnxModule", "check_runtime", "check_threads", "export_program", "pt2_bytes",
           "onnx_bytes", "module_onnx_bytes", "deploy_artifacts", "check_shapes",
           "max_abs_diff", "ort_session", "load_onnx", "retarget_onnx", "onnx_layers",
           "relu_onnx", "inductor_runner", "runner", "time_alternating",
           "latency_by_runtime", "machine_info", "device_id", "torch_threads",
           "default_threads"]


# ---------------------------------------------------------------- ONNX templates
def retarget_onnx(template: bytes, module: nn.Module, example: torch.Tensor,
                  tolerance: float = 1e-4) -> bytes:
    """ONNX of ``module`` at the input shape of ``example``, made from ``template``: the
    ONNX export of a module of the same layout (the same parameter names) at other widths.

    Exporting costs seconds per module (the exporter rebuilds its op registry on every
    call); the latency table needs hundreds of modules that differ only in widths. The
    parameter initializers (named by their state-dict keys) are replaced by ``module``'s,
    the non-affine norms' constant scale/bias are rebuilt at the new widths, and the
    result is checked against ``module(example)`` through onnxruntime. When it does not
    match (an exporter that hard-codes a width elsewhere), ``module`` is exported anew."""
    import numpy as np
    import onnx
    from onnx import numpy_helper, shape_inference
    model = onnx.load_model_from_string(template)
    g = model.graph
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    try:
        inits = []
        for t in g.initializer:
            if t.name in state:
                inits.append(numpy_helper.from_array(state[t.name].astype(
                    numpy_helper.to_array(t).dtype, copy=False), t.name))
            else:
                inits.append(t)
        del g.initializer[:]
        g.initializer.extend(inits)
        dims = g.input[0].type.tensor_type.shape.dim
        for d, n in zip(dims, example.shape):
            if d.HasField("dim_value"):           # a static template: the new shape
                d.dim_value = int(n)
        for out in g.output:
            for d in out.type.tensor_type.shape.dim:
                if d.HasField("dim_value"):
                    d.Clear()
        del g.value_info[:]
        inferred = shape_inference.infer_shapes(model).graph
        shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None
                           for d in v.type.tensor_type.shape.dim]
                  for v in list(inferred.value_info) + list(inferred.input)}
        by_name = {t.name: t for t in g.initializer}
        for node in g.node:
            if node.op_type == "Conv" and node.input[1] in state:
                w = state[node.input[1]]
                for a in node.attribute:      # depthwise: one group per channel
                    if a.name == "group" and a.i > 1 and w.shape[1] == 1:
                        a.i = int(w.shape[0])
            if node.op_type != "InstanceNormalization":
                continue
            c = shapes[node.input[0]][1]
            if c is None:
                raise ValueError("unknown channel count")
            for j, fill in ((1, 1.0), (2, 0.0)):
                old = numpy_helper.to_array(by_name[node.input[j]])
                name = f"{node.output[0]}__{'scale' if j == 1 else 'bias'}"
                g.initializer.append(numpy_helper.from_array(
                    np.full((c,), fill, dtype=old.dtype), name))
                node.input[j] = name
        used = {i for n in g.node for i in n.input}
        keep = [t for t in g.initializer if t.name in used]
        del g.initializer[:]
        g.initializer.extend(keep)
        data = model.SerializeToString()
        if max_abs_diff(OnnxModule(data, threads=1), module, [tuple(example.shape)]) <= tolerance:
            return data
    except (KeyError, IndexError, OnnxError, ValueError):
        pass
    return module_onnx_bytes(module, example)


def _layer_of(node) -> Optional[int]:
    """Index i of the ``model.<i>`` layer an exported node belongs to (torch.onnx records
    the module scopes of every node)."""
    import ast
    import re
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            for scope in ast.literal_eval(p.value):
                m = re.fullmatch(r"model\.(\d+)", scope)
                if m:
                    return int(m.group(1))
    return None


def onnx_layers(model: bytes, start: int, stop: int, input_shape: Sequence[int]) -> bytes:
    """The nodes of layers ``model.<start>`` ... ``model.<stop - 1>`` of a generator's
    ONNX graph as a model of their own, taking one float input of ``input_shape``
    (the latency table times a network's segments as they appear in its export).
    Raises :class:`OnnxError` when the layers do not form a one-input, one-output piece."""
    import onnx
    from onnx import TensorProto, helper
    g = onnx.load_model_from_string(model).graph
    layers = [_layer_of(n) for n in g.node]
    if any(i is None for i in layers):
        raise OnnxError("ONNX graph without module scopes: cannot cut it into layers")
    nodes = [n for n, i in zip(g.node, layers) if start <= i < stop]
    others = [n for n, i in zip(g.node, layers) if not start <= i < stop]
    produced = {o for n in nodes for o in n.output}
    inits = {t.name for t in g.initializer}
    inputs = list(dict.fromkeys(i for n in nodes for i in n.input
                                if i and i not in produced and i not in inits))
    outside = {i for n in others for i in n.input} | {o.name for o in g.output}
    outputs = list(dict.fromkeys(o for n in nodes for o in n.output if o in outside))
    if not nodes or len(inputs) != 1 or len(outputs) != 1:
        raise OnnxError(f"layers {start}..{stop - 1} have {len(inputs)} inputs and "
                        f"{len(outputs)} outputs in the ONNX graph")
    used = {i for n in nodes for i in n.input}
    graph = helper.make_graph(
        nodes, f"layers_{start}_{stop}",
        [helper.make_tensor_value_info(inputs[0], TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, None)],
        [t for t in g.initializer if t.name in used])
    src = onnx.load_model_from_string(model)
    out = helper.make_model(graph, opset_imports=src.opset_import, ir_version=src.ir_version)
    return out.SerializeToString()


def relu_onnx(shape: Sequence[int]) -> bytes:
    """A one-node ONNX model: the runtime's per-call cost with (almost) no work."""
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "probe",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                             list(shape))],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                                             list(shape))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                             ir_version=10).SerializeToString()
