"""What counts as a constant in a matched pattern: eps, exponents, axes (``const_array``).

A graph input is never a constant (callers may feed anything, and an initializer also listed as a
graph input can be overridden). A small subgraph of standard ops fed only by constants is evaluated
(ONNX's reference evaluator, one node at a time); ``Shape(x)`` counts where x's dims are static and
``Size(Shape(x))`` where x's rank is known.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

FLOAT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.DOUBLE})


def const_array(value, depth: int = 0) -> np.ndarray | None:
    """The value's constant content, or None (also for graph inputs, which callers may override).

    A small subgraph of standard ops fed only by constants counts as a constant and is evaluated
    (ONNX's reference evaluator, one node at a time): ONNX's function bodies write eps as
    ``Cast(Constant(1e-5), to=T)``, onnxscript-authored models as ``CastLike(Constant, x)``, others
    the exponent as ``Cast(int 2)`` or axes as ``Reshape(Constant, Constant)``."""
    if value is None or value.is_graph_input():
        return None
    from onnxscript.rewriter._ir_utils import get_numpy_value

    array = get_numpy_value(value)
    node = value.producer()
    if array is not None or node is None or node.domain not in ("", "ai.onnx") or depth > FOLD_DEPTH:
        return array
    if node.op_type == "Shape":
        return _static_shape(node)
    if node.op_type == "Size" and (length := _shape_length(node.inputs[0])) is not None:
        return np.array(length, np.int64)
    if node.op_type == "CastLike" and (source := const_array(node.inputs[0], depth + 1)) is not None:
        like = node.inputs[1].dtype if len(node.inputs) > 1 and node.inputs[1] is not None else None
        return source.astype(like.numpy()) if like is not None and like in FLOAT_TYPES else None
    if node.op_type not in FOLDABLE or any(a.type == ir.AttributeType.GRAPH for a in node.attributes.values()):
        return None
    inputs = [const_array(v, depth + 1) if v is not None else None for v in node.inputs]
    if any(a is None for a, v in zip(inputs, node.inputs) if v is not None):
        return None
    if sum(a.size for a in inputs if a is not None) > FOLD_MAX_ELEMENTS:
        return None
    return _evaluate(node, inputs, value)


def _static_shape(node) -> np.ndarray | None:
    """``Shape(x)`` where x's dims (in its start/end slice) are all static."""
    dims = _shape_slice(node)
    return np.array(dims, np.int64) if dims is not None and is_static(dims) else None


def _shape_length(value) -> int | None:
    """The length of ``value`` = ``Shape(x)`` where x's rank is known (its dims need not be): ONNX's
    function bodies compute axes as ``Range(axis, Size(Shape(X)))`` (RMSNormalization's expanded tests)."""
    node = value.producer() if value is not None else None
    if node is None or node.op_type != "Shape" or node.domain not in ("", "ai.onnx"):
        return None
    dims = _shape_slice(node)
    return None if dims is None else len(dims)


def _shape_slice(shape_node) -> list | None:
    """The dims of ``Shape(x)``'s output (its start/end attributes applied), or None for an x of unknown rank."""
    x = shape_node.inputs[0]
    if x is None or x.shape is None:
        return None
    dims = [dim_of(d) for d in x.shape]
    start = shape_node.attributes.get_int("start", 0)
    end = shape_node.attributes.get_int("end", len(dims))
    return dims[slice(start, end)]  # Python's slice clamps and counts negatives from the end, as ONNX does


# the ops a constant eps, exponent or axes subgraph is made of (evaluated where all inputs are constant)
FOLDABLE = frozenset({"Constant", "Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Concat",
                      "Gather", "Slice", "Expand", "ConstantOfShape", "Range", "Neg", "Abs", "Add", "Sub", "Mul",
                      "Div", "Pow", "Sqrt", "Reciprocal", "Size"})
FOLD_DEPTH = 8
FOLD_MAX_ELEMENTS = 4096


def _evaluate(node, inputs: list, value) -> np.ndarray | None:
    """One node on constant inputs, through ONNX's reference evaluator; None where it cannot run."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" if a is not None else "" for i, a in enumerate(inputs)]
    proto = ir.serde.serialize_node(node)
    del proto.input[:], proto.output[:]
    proto.input.extend(names)
    proto.output.extend(f"out{i}" for i in range(len(node.outputs)))
    graph = onnx.helper.make_graph(
        [proto], "fold", [], [onnx.helper.make_empty_tensor_value_info(o) for o in proto.output],
        [onnx.numpy_helper.from_array(np.asarray(a), n) for a, n in zip(inputs, names) if a is not None])
    opset = value.graph.opset_imports.get("", 17) if value.graph is not None else 17
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    try:
        results = ReferenceEvaluator(model).run(None, {})
    except Exception:  # noqa: BLE001 - an op the evaluator cannot run here is just not a constant
        return None
    return np.asarray(results[node.outputs.index(value)])


def dim_of(dim):
    """int, a symbolic dim's name, or None (unknown: equal to nothing, not even another unknown). A
    negative size is unknown too: some exporters write -1 for a dynamic dim, and ONNX Runtime runs it."""
    if isinstance(dim, int):
        return dim if dim >= 0 else None
    return getattr(dim, "value", None)


def is_static(dims) -> bool:
    return all(isinstance(d, int) for d in dims)
