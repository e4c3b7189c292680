"""bf16 plans: the fp16 plan retyped, and the opset raised where ONNX types an op in bf16 only later.

onnxconverter-common has no bf16 conversion. So :func:`lndeploy.passes.precision.plan.plan_precision`
makes the fp16 plan and this module retypes it (initializers, constants, Casts, value_info), taking
weights from the original fp32 values (no double rounding, no fp16 range clamp). ONNX types some ops
in bf16 only from a later opset (``Conv`` 22, ``ConstantOfShape`` 20): a bf16 plan first raises the
model's opset to the first one that types every op that will compute in bf16.
"""

from __future__ import annotations

import itertools

from lndeploy import plugin_spec
from lndeploy.errors import BadInputError, first_line
from lndeploy.passes.precision.dtypes import BFLOAT16, FLOAT, FLOAT16, attr, elem, kept_fp32, set_attr, tensor_types


def raise_opset_for_bf16(model):
    """ONNX types Conv in bf16 from opset 22 on, ConstantOfShape from 20: convert when needed.

    Only ops that will compute in bf16 count: those with fp32 tensors, not kept in fp32 by a block list.
    """
    import onnx
    from onnx import version_converter

    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    types = tensor_types(onnx.shape_inference.infer_shapes(model))
    ops = {n.op_type for g in plugin_spec.iter_graphs(model.graph) for n in g.node
           if n.domain in ("", "ai.onnx") and not kept_fp32(n)
           and any(types.get(x) == FLOAT for x in itertools.chain(n.input, n.output))}
    needed = max([_first_bf16_opset(op, current) for op in ops] + [current])
    if needed == current:
        return model
    try:
        return version_converter.convert_version(model, needed)
    except Exception as err:
        raise BadInputError(f"bf16 needs ONNX opset {needed} for this model ({current} given) and the "
                            f"ONNX version converter failed: {first_line(err)}") from err


def _first_bf16_opset(op_type: str, current: int) -> int:
    """The first opset >= ``current`` whose schema of ``op_type`` types its float inputs as bf16."""
    import onnx

    latest = onnx.defs.onnx_opset_version()
    for version in range(current, latest + 1):
        try:
            schema = onnx.defs.get_schema(op_type, version)
        except onnx.defs.SchemaError:
            return current
        floats = [c.allowed_type_strs for c in schema.type_constraints if "tensor(float)" in c.allowed_type_strs]
        if all("tensor(bfloat16)" in allowed for allowed in floats):
            return max(version, current)
    raise BadInputError(f"ONNX has no bf16 {op_type} up to opset {latest}: plan this model in fp16")


def retype_bf16(planned, source) -> None:
    """fp16 -> bf16 everywhere in ``planned``; initializers from ``source``'s fp32 values by name."""
    from onnx import numpy_helper

    originals = {t.name: t for g in plugin_spec.iter_graphs(source.graph) for t in g.initializer}
    for graph in plugin_spec.iter_graphs(planned.graph):
        for index, tensor in enumerate(graph.initializer):
            if tensor.data_type == FLOAT16:
                original = originals.get(tensor.name)
                values = numpy_helper.to_array(original if original is not None else tensor)
                new = numpy_helper.from_array(to_bf16(values), tensor.name)
                graph.initializer[index].CopyFrom(new)
        for value in itertools.chain(graph.input, graph.output, graph.value_info):
            if elem(value) == FLOAT16:
                value.type.tensor_type.elem_type = BFLOAT16
        for node in graph.node:
            _retype_node_bf16(node)


def to_bf16(values):
    """fp32 values -> bf16, finite values kept finite. Rounding to nearest takes fp32's largest
    magnitudes (``torch.finfo(torch.float32).min``, the mask constant of ``transformers``' attention) to
    -inf in bf16, and a fully masked softmax row of -inf is NaN where PyTorch gives a uniform row:
    clamp to bf16's own largest finite value first, as the fp16 conversion clamps to 65504."""
    import ml_dtypes
    import numpy as np

    values = np.asarray(values, dtype=np.float32)
    limit = float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)
    clamped = np.where(np.isfinite(values), np.clip(values, -limit, limit), values)
    return clamped.astype(ml_dtypes.bfloat16)


def _retype_node_bf16(node) -> None:
    import onnx
    from onnx import numpy_helper

    if node.op_type == "Cast" and attr(node, "to") == FLOAT16:
        set_attr(node, "to", BFLOAT16)
    for attribute in node.attribute:
        tensors = [attribute.t] if attribute.type == onnx.AttributeProto.TENSOR else list(attribute.tensors)
        for tensor in tensors:
            if tensor.data_type == FLOAT16:
                tensor.CopyFrom(numpy_helper.from_array(to_bf16(numpy_helper.to_array(tensor)), tensor.name))
