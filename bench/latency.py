"""CPU latency of the teacher (resnet_9blocks) vs the released compressed horse2zebra model,
on each runtime.

For every runtime variant and thread count, both models run at batch 1 and the same
resolution, measured alternately in one run (teacher, compressed, teacher, ...) so machine
noise hits both alike; medians, their ratio (the speed-up) and the MACs ratio beside it.

    python bench/latency.py [--size 256] [--repeats 7] [--threads 1,0] [--variants ...]
                            [--json]

Variants (``--variants all`` measures every one; the default is the runtimes' defaults):

- ``eager``: PyTorch eager, as trained; ``eager-channels-last``: weights and input in
  channels-last memory format; ``eager-groupnorm``: instance norms run as
  ``GroupNorm(C, C)`` (the same function; a faster CPU kernel);
- ``onnxruntime``: the model exported to ONNX (``ganc.runtime``), onnxruntime with all
  graph optimisations; ``onnxruntime-extended`` / ``onnxruntime-basic``: lower
  optimisation levels; ``onnxruntime-int8``: static int8 quantisation (QDQ, per-channel
  weights, calibrated on the horse2zebra-mini test images when present, else on noise;
  the output change against fp32 is printed: ``int8_max_abs_diff``).

``--json`` prints a list with one object per (variant, thread count):
``{"runtime", "variant", "threads", "teacher_ms", "compressed_ms", "speedup",
"macs_ratio", "speedup_over_macs_ratio", "size", "repeats", "compressed_weights"}`` (thread
count 0 is reported as the number it resolves to); the object with the highest
``speedup_over_macs_ratio`` has ``"best": true``. Figures on a loaded machine say little:
take them on a quiet one.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ganc import nn as gnn  # noqa: E402
from ganc.profile import count_macs, count_params  # noqa: E402
from ganc.deploy import onnx_bytes  # noqa: E402
from ganc.onnxrun import OnnxModule  # noqa: E402
from ganc.runtime import (default_threads, machine_info, runner,  # noqa: E402
                          time_alternating, torch_threads)
from ganc.weights import load_weights  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASED = os.path.join(ROOT, "..", "shared", "models", "gan-compression-horse2zebra-compressed")
HORSES = os.path.join(ROOT, "..", "shared", "data", "horse2zebra-mini", "testA")
DEFAULT_VARIANTS = ("eager", "onnxruntime", "inductor")
VARIANTS = ("eager", "eager-channels-last", "eager-groupnorm", "onnxruntime",
            "onnxruntime-extended", "onnxruntime-basic", "onnxruntime-int8", "inductor")


def groupnorm(model: nn.Module) -> nn.Module:
    """A copy whose non-affine instance norms are GroupNorm(C, C): the same function."""
    model = copy.deepcopy(model)
    for mod in list(model.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, nn.InstanceNorm2d) and not child.affine:
                setattr(mod, name, nn.GroupNorm(child.num_features, child.num_features,
                                                eps=child.eps, affine=False))
    return model.eval()


def calibration_inputs(size: int, n: int = 8):
    """Inputs for int8 calibration: the mini test horses when present, else noise."""
    if os.path.isdir(HORSES):
        from ganc.data.images import list_images, load_rgb, to_tensor
        paths = list_images(HORSES, "horses")[:n]
        return [to_tensor(load_rgb(p).resize((size, size), 3))[None] for p in paths], "horses"
    g = torch.Generator().manual_seed(0)
    return [torch.rand(1, 3, size, size, generator=g) * 2 - 1 for _ in range(n)], "noise"


def int8_onnx(data: bytes, inputs) -> bytes:
    """Static QDQ int8 quantisation of an ONNX model (per-channel weights)."""
    import tempfile
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"input": x.numpy()} for x in inputs])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as d:
        src, pre, out = (os.path.join(d, n) for n in ("m.onnx", "pre.onnx", "q.onnx"))
        with open(src, "wb") as f:
            f.write(data)
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        with open(out, "rb") as f:
            return f.read()


def make_runner(model: nn.Module, variant: str, threads: int, size: int, onnx: dict, key: str,
                calib):
    """fn(x) for a model on a variant; ``onnx`` caches each model's fp32 export."""
    if variant == "inductor":
        return runner(model, "inductor", threads, 3, size)
    if variant.startswith("eager"):
        net = copy.deepcopy(model).eval()
        cl = variant == "eager-channels-last"
        if cl:
            net = net.to(memory_format=torch.channels_last)
        if variant == "eager-groupnorm":
            net = groupnorm(net)

        def run(x):
            with torch_threads(threads), torch.inference_mode():
                return net(x.to(memory_format=torch.channels_last) if cl else x)
        return run
    if key not in onnx:
        onnx[key] = onnx_bytes(model, 3, size)
    data = onnx[key]
    level = {"onnxruntime-extended": "extended", "onnxruntime-basic": "basic"}.get(variant,
                                                                                   "all")
    if variant == "onnxruntime-int8":
        if key + "-int8" not in onnx:
            onnx[key + "-int8"] = int8_onnx(data, calib)
        data = onnx[key + "-int8"]
    return OnnxModule(data, threads=threads, level=level)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", default="1,0",
                    help="comma-separated thread counts (0: the runtime's default)")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                    help="comma-separated variants, or 'all': " + ", ".join(VARIANTS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    variants = VARIANTS if args.variants == "all" else tuple(args.variants.split(","))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    threads = list(dict.fromkeys(int(t) or default_threads() for t in args.threads.split(",")))

    teacher = gnn.build("resnet_9blocks").eval()
    compressed = gnn.build("sub_mobile_resnet_9blocks", config="16_16_32_16_32_32_16_16").eval()
    weights = os.path.join(RELEASED, "latest_net_G.pth")
    source = "released weights" if os.path.exists(weights) else "random init (../shared missing)"
    if os.path.exists(weights):
        load_weights(compressed, weights)
    shape = (1, 3, args.size, args.size)
    macs = {"teacher": count_macs(teacher, shape), "compressed": count_macs(compressed, shape)}
    macs_ratio = macs["teacher"] / macs["compressed"]
    calib, calib_source = calibration_inputs(args.size)
    x = torch.randn(*shape)
    onnx: dict = {}
    rows, notes = [], {}
    for variant in variants:
        for t in threads:
            fns = {m: make_runner(net, variant, t, args.size, onnx, m, calib)
                   for m, net in (("teacher", teacher), ("compressed", compressed))}
            res = time_alternating({k: (lambda f=f: f(x)) for k, f in fns.items()},
                                   rounds=args.repeats, warmup=args.warmup)
            tm, cm = res["teacher"]["median_ms"], res["compressed"]["median_ms"]
            rows.append({"runtime": variant.split("-")[0], "variant": variant, "threads": t,
                         "teacher_ms": tm, "compressed_ms": cm, "speedup": tm / cm,
                         "macs_ratio": macs_ratio,
                         "speedup_over_macs_ratio": tm / cm / macs_ratio,
                         "size": args.size, "repeats": args.repeats,
                         "compressed_weights": source})
            if variant == "onnxruntime-int8" and "int8_max_abs_diff" not in notes:
                fp32 = OnnxModule(onnx["compressed"], threads=t)
                notes["int8_max_abs_diff"] = max(
                    float((fns["compressed"](c) - fp32(c)).abs().max()) for c in calib)
                notes["int8_calibration"] = calib_source
                rows[-1].update(notes)
            if variant == "inductor" and "inductor_max_abs_diff" not in notes:
                with torch.inference_mode():
                    notes["inductor_max_abs_diff"] = max(
                        float((fns["compressed"](c) - compressed(c)).abs().max())
                        for c in calib)
                rows[-1]["inductor_max_abs_diff"] = notes["inductor_max_abs_diff"]
    best = max(rows, key=lambda r: r["speedup_over_macs_ratio"])
    best["best"] = True
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    info = machine_info()
    print(f"latency, batch 1, {args.size}x{args.size}, median of {args.repeats} alternating "
          f"runs ({source}); {info['cpu']}, {info['usable_cores']} cores, torch "
          f"{info['torch']}, onnxruntime {info['onnxruntime']}")
    print(f"  teacher resnet_9blocks {macs['teacher'] / 1e9:.2f} GMACs "
          f"{count_params(teacher) / 1e6:.2f} M params; compressed 16_16_32_16_32_32_16_16 "
          f"{macs['compressed'] / 1e9:.2f} GMACs; MACs ratio {macs_ratio:.1f}x")
    for r in rows:
        print(f"  {r['variant']:22s} {r['threads']:2d} threads  teacher {r['teacher_ms']:8.1f} ms"
              f"  compressed {r['compressed_ms']:7.1f} ms  speed-up {r['speedup']:5.2f}x  "
              f"/ MACs ratio {r['speedup_over_macs_ratio']:.2f}" + ("  <- best" if r is best
                                                                  else ""))
    if "int8_max_abs_diff" in notes:
        print(f"  int8: max |int8 - fp32| output difference {notes['int8_max_abs_diff']:.3f} "
              f"(outputs in [-1, 1]), calibrated on {notes['int8_calibration']}")
    if "inductor_max_abs_diff" in notes:
        print(f"  inductor: max |compiled - eager| output difference "
              f"{notes['inductor_max_abs_diff']:.2e}")


if __name__ == "__main__":
    main()
