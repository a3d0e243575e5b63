"""ONNX graphs made without exporting again: the latency table's shortcuts (no Ray).

- :func:`retarget_onnx`: an exported template with another module's weights and widths.
- :func:`onnx_layers`: the nodes of some ``model.<i>`` layers of a generator's graph as a
  model of their own.
- :func:`relu_onnx`: a one-node model, the runtime's per-call cost.
"""
from __future__ import annotations

import ast
import re
from typing import Optional, Sequence

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper, shape_inference

from .deploy import OPSET, max_abs_diff, module_onnx_bytes
from .onnxrun import OnnxError, OnnxModule


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
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "probe",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                             list(shape))],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                                             list(shape))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                             ir_version=10).SerializeToString()


__all__ = ["retarget_onnx", "onnx_layers", "relu_onnx"]
