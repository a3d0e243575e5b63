"""ONNX models run by onnxruntime on the CPU (no Ray).

- :func:`ort_session`: an onnxruntime CPU session at a thread count and optimisation level.
- :class:`OnnxModule`: an ONNX file run by onnxruntime behind a ``module(x) -> y`` call, so
  ``ganc translate`` and ``ganc profile`` treat it like a torch generator.
- :func:`load_onnx`: an ONNX file as an :class:`OnnxModule`, failing in one line.
"""
from __future__ import annotations

import os

import torch

from .errors import ConfigError, GancError, one_line

ORT_LEVELS = ("disable", "basic", "extended", "all")


class OnnxError(GancError):
    """A file that is not an ONNX model onnxruntime can run, or an export that failed."""



def _ort_level(level: str):
    import onnxruntime as ort  # deferred: heavy
    if level not in ORT_LEVELS:
        raise ConfigError(f"onnxruntime optimisation level {level!r} is not one of: "
                          + ", ".join(ORT_LEVELS))
    L = ort.GraphOptimizationLevel
    return {"disable": L.ORT_DISABLE_ALL, "basic": L.ORT_ENABLE_BASIC,
            "extended": L.ORT_ENABLE_EXTENDED, "all": L.ORT_ENABLE_ALL}[level]


def ort_session(model, threads: int = 0, level: str = "all", where: str = "ONNX model"):
    """An onnxruntime CPU session on ONNX bytes or a file path; ``threads`` 0: default."""
    import onnxruntime as ort  # deferred: heavy
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
        raise OnnxError(f"{where} cannot be loaded by onnxruntime: {one_line(e, limit=200)}"
                        ) from None


class OnnxModule:
    """An ONNX generator run by onnxruntime, called like a torch module: ``m(x) -> y``
    on CPU float32 tensors. Inputs after the first (the image) are extra inputs given by
    keyword, ``m(x, style=s)`` (a MUNIT export's style code); ``extra_inputs`` lists them
    with one image's shape (:mod:`ganc.extras`)."""

    def __init__(self, model, threads: int = 0, level: str = "all", where: str = "ONNX model"):
        self.session = ort_session(model, threads, level, where)
        inputs = self.session.get_inputs()
        if not inputs or len(self.session.get_outputs()) < 1:
            raise OnnxError(f"{where} must take an image tensor; it has no inputs")
        self.input_name = inputs[0].name
        self.input_names = [i.name for i in inputs]
        shape = inputs[0].shape
        if len(shape) != 4:
            raise OnnxError(f"{where} takes a rank-{len(shape)} input; a generator takes "
                            "NCHW images")
        bad = [i.name for i in inputs[1:] if not all(isinstance(d, int) for d in i.shape[1:])]
        if bad:
            raise OnnxError(f"{where}: input {bad[0]!r} has no fixed per-image shape")
        self.extra_inputs = {i.name: tuple(i.shape[1:]) for i in inputs[1:]}
        self.input_nc = shape[1] if isinstance(shape[1], int) else None
        self.threads = int(threads)
        self.where = where

    def __call__(self, x: torch.Tensor, **extra) -> torch.Tensor:
        missing = [n for n in self.extra_inputs if n not in extra]
        unknown = [n for n in extra if n not in self.extra_inputs]
        if missing or unknown:
            raise ConfigError(f"{self.where} takes inputs {', '.join(self.input_names)}; "
                              + (f"{missing[0]!r} not given" if missing
                                 else f"{unknown[0]!r} is not one of them"))
        for k, v in extra.items():
            if tuple(v.shape[1:]) != self.extra_inputs[k] or v.shape[0] != x.shape[0]:
                raise ConfigError(f"{self.where}: input {k!r} of shape {tuple(v.shape)}; it "
                                  f"takes ({x.shape[0]}, "
                                  f"{', '.join(map(str, self.extra_inputs[k]))})")
        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        feed = {self.input_name: arr}
        feed.update({k: v.detach().to("cpu", torch.float32).contiguous().numpy()
                     for k, v in extra.items()})
        try:
            out = self.session.run(None, feed)[0]
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
    import onnx  # deferred: heavy
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



__all__ = ["ORT_LEVELS", "OnnxError", "ort_session", "OnnxModule", "load_onnx"]
