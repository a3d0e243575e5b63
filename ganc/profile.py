"""MACs, parameter counts and latency of a model.

MACs follow the convention of the published GAN Compression tables (``torchprofile``):
one MAC per multiply of a conv or linear layer (bias not counted); a transposed conv
counted per *output* element (output elements x in_channels x kernel area / groups);
one MAC per output element of every normalization layer, affine or not; one MAC per output
element of an elementwise multiply (``aten::mul``, e.g. SPADE's ``x * (1 + gamma)``), as
torchprofile 0.0.1 (the version GAN Compression pins) counts it. Additions, activations
(ReLU, LeakyReLU, tanh), padding and nearest/bilinear resizing cost nothing, as there. The other
convention on offer is torch's ``FlopCounterMode`` (transposed convs per input element,
norms not counted), reported as FLOPs / 2.
"""
from __future__ import annotations

import math
import statistics
import time

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from .errors import ConfigError

FIELD = "torchprofile"        # the published tables' convention (default)
FLOPCOUNTER = "flopcounter"   # torch.utils.flop_counter.FlopCounterMode / 2
CONVENTIONS = (FIELD, FLOPCOUNTER)

aten = torch.ops.aten
_NORM_OPS = {
    aten.native_batch_norm.default, aten._native_batch_norm_legit.default,
    aten._native_batch_norm_legit.no_stats, aten._native_batch_norm_legit_no_training.default,
    aten.native_layer_norm.default, aten.native_group_norm.default,
}
_CONV_OPS = {aten.convolution.default, aten._convolution.default}
_MM_OPS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}
_MUL_OPS = {aten.mul.Tensor, aten.mul.Scalar, aten.mul_.Tensor, aten.mul_.Scalar}


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out


class _FieldMacCounter(TorchDispatchMode):
    """Counts MACs of every conv / matmul / norm / multiply executed, in the field's
    convention."""

    def __init__(self):
        super().__init__()
        self.macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        packet = func
        if packet in _CONV_OPS:
            w = args[1]
            transposed = bool(args[6])
            groups = int(args[8])
            k = math.prod(w.shape[2:])
            o = _first_tensor(out).numel()
            in_per_group = (w.shape[0] // groups) if transposed else w.shape[1]
            self.macs += o * in_per_group * k
        elif packet in _MM_OPS:
            a = args[1] if packet in (aten.addmm.default, aten.baddbmm.default) else args[0]
            o = _first_tensor(out)
            self.macs += o.numel() * a.shape[-1]
        elif packet in _NORM_OPS or packet in _MUL_OPS:
            self.macs += _first_tensor(out).numel()
        return out


def _call(model, x, forward_kw):
    return model(x, **forward_kw) if forward_kw else model(x)


def count_macs(model: nn.Module, input_size=(1, 3, 256, 256), convention: str = FIELD,
               **forward_kw) -> int:
    """MACs of one forward pass on a zero input of ``input_size``."""
    if convention not in CONVENTIONS:
        raise ConfigError(f"MACs convention {convention!r} is not one of: "
                          + ", ".join(CONVENTIONS))
    p = next(model.parameters(), None)
    x = torch.zeros(*input_size, device=p.device if p is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if convention == FIELD:
                counter = _FieldMacCounter()
                with counter:
                    _call(model, x, forward_kw)
                return int(counter.macs)
            # deferred: torch.utils.flop_counter (0.2 s)
            from torch.utils.flop_counter import FlopCounterMode
            fc = FlopCounterMode(display=False)
            with fc:
                _call(model, x, forward_kw)
            return int(fc.get_total_flops() // 2)
    finally:
        model.train(was_training)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure_latency(model: nn.Module, input_size=(1, 3, 256, 256), warmup: int = 3,
                    repeats: int = 10, device=None, **forward_kw) -> dict:
    """Median wall time (ms) of ``repeats`` forward passes after ``warmup`` passes."""
    device = torch.device(device) if device else next(model.parameters()).device
    model = model.to(device).eval()
    x = torch.randn(*input_size, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            t0 = time.perf_counter()
            _call(model, x, forward_kw)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times),
            "repeats": repeats, "device": str(device), "threads": torch.get_num_threads()}


def profile(model: nn.Module, size=256, input_nc: int = 3, convention: str = FIELD,
            latency: bool = False, **forward_kw) -> dict:
    """MACs (in ``convention``), params and optionally latency, as one dict; ``size`` is
    the side of a square input or (height, width)."""
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    shape = (1, input_nc, int(h), int(w))
    out = {"macs": count_macs(model, shape, convention, **forward_kw),
           "params": count_params(model), "convention": convention,
           "input_size": list(shape)}
    if latency:
        out["latency"] = measure_latency(model, shape, **forward_kw)
    return out
