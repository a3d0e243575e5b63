"""Deployed forms of a generator, checked against the eager module (no Ray).

- :func:`export_program`: ``torch.export`` of a generator with a dynamic batch and image
  size (height and width multiples of 4, as the two stride-2 downsamplings need);
  :func:`pt2_bytes` saves it as ``.pt2`` (what torch recommends in place of TorchScript).
- :func:`onnx_bytes`: the same program as ONNX (opset :data:`OPSET`), through
  ``torch.onnx.export`` (the torch.export-based exporter).
- :func:`deploy_artifacts`: both, checked against the eager module (max abs difference on
  two input shapes, through onnxruntime for the ONNX file).

A generator that takes inputs beside the image (:mod:`ganc.extras`: a MUNIT style code) is
exported with them as further graph inputs named by their keyword (``style``), batch
dynamic, and checked on values drawn from a seed.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import io
import warnings
from typing import Callable, Sequence

import torch
import torch.nn as nn

from .extras import draw_for, extra_shapes
from .onnxrun import OnnxError, OnnxModule

OPSET = 20                      # ONNX opset of every exported model
ONNX_TOLERANCE = 1e-3           # an export whose outputs differ more from eager fails
SIDE_MULTIPLE = 4               # image sides must be multiples of this (a net's own:
                                # its ``side_multiple``, e.g. a U-Net's 2 ** levels)


def side_multiple(model: nn.Module) -> int:
    """What the sides of ``model``'s inputs must be multiples of."""
    return int(getattr(model, "side_multiple", SIDE_MULTIPLE))


def _example(input_nc: int, size: int) -> torch.Tensor:
    # batch 2: an example batch of 1 makes torch.export specialise the batch dimension
    return torch.zeros(2, int(input_nc), int(size), int(size))


def _extras(model, batch: int) -> dict:
    """The model's extra inputs (:mod:`ganc.extras`) for an example batch."""
    return draw_for(model, batch, seed=0)


def _dynamic_shapes(model: nn.Module):
    name = next(iter(inspect.signature(model.forward).parameters))
    batch = torch.export.Dim("batch", min=1, max=4096)
    m = side_multiple(model)
    low = 2 if m <= SIDE_MULTIPLE else 1      # a U-Net runs at one multiple (traced at two)
    h = torch.export.Dim("h", min=low, max=16384 // m)
    w = torch.export.Dim("w", min=low, max=16384 // m)
    shapes = {name: {0: batch, 2: m * h, 3: m * w}}
    return {**shapes, **{k: {0: batch} for k in extra_shapes(model)}}


def _trace_size(model: nn.Module, size: int) -> int:
    """The side of the traced example: ``size``, or twice the side multiple where
    ``size`` is one multiple (a dimension of 1 would be specialised)."""
    return max(int(size), 2 * side_multiple(model))


def _size_oblivious(model: nn.Module):
    """A net whose sides may be one multiple of ``side_multiple`` (a U-Net at its native
    size, whose innermost level is then 1x1) is traced at two multiples with sizes treated
    as possibly 1 (no guard that a size is not 1); other nets as before."""
    if side_multiple(model) <= SIDE_MULTIPLE:
        return contextlib.nullcontext()
    import torch.fx.experimental._config as fx_config  # deferred: only for such nets
    return fx_config.patch(backed_size_oblivious=True)


def export_program(model: nn.Module, input_nc: int, size: int):
    """``torch.export`` of ``model`` (eval mode, CPU) with dynamic batch, height and width
    (and its extra inputs, by keyword, with the same dynamic batch)."""
    model = model.eval()
    try:
        with torch.no_grad(), _size_oblivious(model):
            return torch.export.export(model, (_example(input_nc, _trace_size(model, size)),),
                                       kwargs=_extras(model, 2),
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
    extra = {}
    if isinstance(model_or_program, nn.Module):
        model_or_program = model_or_program.eval()
        extra = _extras(model_or_program, 1)
        if dynamic:
            model_or_program = export_program(model_or_program, input_nc, size)
    else:
        extra = {k: v[:1] for k, v in _program_extras(model_or_program).items()}
    args = (_example(input_nc, size)[:1],)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            prog = torch.onnx.export(model_or_program, args, kwargs=extra, dynamo=True,
                                     verbose=False, opset_version=OPSET,
                                     input_names=["input", *extra],
                                     output_names=["output"], external_data=False)
        except Exception as e:  # pragma: no cover
            raise OnnxError(f"ONNX export failed: {str(e).strip().splitlines()[0][:200]}"
                            ) from None
    return prog.model_proto.SerializeToString()


def _program_extras(program) -> dict:
    """Example values of an exported program's keyword inputs (its extra inputs)."""
    kwargs = program.example_inputs[1] if program.example_inputs else {}
    return dict(kwargs or {})


def module_onnx_bytes(module: nn.Module, example: torch.Tensor) -> bytes:
    """ONNX of a module at one fixed input shape (the latency table's layers)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(module.eval(), (example,), dynamo=True, verbose=False,
                                 opset_version=OPSET, input_names=["input"],
                                 output_names=["output"], external_data=False)
    return prog.model_proto.SerializeToString()


def check_shapes(input_nc: int, size: int, multiple: int = SIDE_MULTIPLE) -> list:
    """Input shapes an export is checked on: batch 1 at the eval size, and batch 2 at a
    non-square size (proves the batch and the sides are dynamic); sides multiples of
    ``multiple``."""
    half = max(2 * multiple, (size // 2) // multiple * multiple)
    return [(1, input_nc, size, size), (2, input_nc, half, size)]


def max_abs_diff(run: Callable, model: nn.Module, shapes: Sequence[tuple], seed: int = 0
                 ) -> float:
    """Largest |run(x, **extra) - model(x, **extra)| over random inputs of ``shapes``
    (``extra``: the model's extra inputs drawn from ``seed``, :mod:`ganc.extras`)."""
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    with torch.no_grad():
        for i, shape in enumerate(shapes):
            x = torch.rand(*shape, generator=g) * 2 - 1
            extra = draw_for(model, shape[0], seed, first=100 * i)
            ref = model(x, **extra)
            out = run(x, **extra)
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
    import onnxruntime  # deferred: heavy, only its version
    model = copy.deepcopy(model).cpu().eval()
    program = export_program(model, input_nc, size)
    shapes = check_shapes(input_nc, size, side_multiple(model))
    pt2_diff = max_abs_diff(program.module(), model, shapes)
    data = onnx_bytes(program, input_nc, size)
    ort_diff = max_abs_diff(OnnxModule(data, threads=1), model, shapes)
    for what, diff in (("model.pt2", pt2_diff), ("model.onnx", ort_diff)):
        if not diff <= ONNX_TOLERANCE:
            raise OnnxError(f"{what} differs from the eager model by {diff:.3g} "
                            f"(> {ONNX_TOLERANCE:g}) on inputs {shapes}")
    extras = {k: list(v) for k, v in extra_shapes(model).items()}
    card = {"onnx": {"file": "model.onnx", "opset": OPSET, "input": "input",
                     "output": "output", **({"extra_inputs": extras} if extras else {}),
                     "dynamic_axes": {"0": "batch",
                                      "2": f"height ({side_multiple(model)}*k)",
                                      "3": f"width ({side_multiple(model)}*k)"},
                     "checked_shapes": [list(s) for s in shapes],
                     "max_abs_diff_vs_eager": ort_diff,
                     "checked_with": f"onnxruntime {onnxruntime.__version__}"},
            "pt2": {"file": "model.pt2", "format": "torch.export (torch.export.load)",
                    "checked_shapes": [list(s) for s in shapes],
                    "max_abs_diff_vs_eager": pt2_diff, "torch": torch.__version__}}
    return {"pt2": pt2_bytes(program), "onnx": data, "card": card}



__all__ = ["OPSET", "ONNX_TOLERANCE", "SIDE_MULTIPLE", "export_program", "pt2_bytes",
           "onnx_bytes", "module_onnx_bytes", "check_shapes", "max_abs_diff",
           "deploy_artifacts"]
