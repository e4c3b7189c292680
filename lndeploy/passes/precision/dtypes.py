"""The precision plan's vocabulary: ONNX element types, which ops stay fp32, and how to read types.

A leaf: the other modules of this package import it and nothing else of the package, so none of them
imports another in a circle.
"""

from __future__ import annotations

import functools
import itertools

from lndeploy import plugin_spec

FLOAT, FLOAT16, BFLOAT16 = 1, 10, 16  # onnx.TensorProto data types
FP16_MAX = 65504.0
FP16_MIN_POSITIVE = 2.0**-24  # the smallest fp16 subnormal: smaller magnitudes would flush to 0

LN_OP_TYPES = ("LayerNormalization", plugin_spec.OP_TYPE)
SUM_OP_TYPES = ("Add", "Sum", "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "Softmax", "LogSoftmax",
                "AveragePool", "GlobalAveragePool")
FP32_OP_TYPES = LN_OP_TYPES + SUM_OP_TYPES


def elem(value_info) -> int:
    """The ONNX element type of a ``ValueInfoProto`` (0 when it is not a tensor)."""
    return value_info.type.tensor_type.elem_type


def tensor_types(model) -> dict:
    """name -> ONNX elem type of every tensor the model declares (all graphs; Cast outputs too)."""
    types = {}
    for graph in plugin_spec.iter_graphs(model.graph):
        for tensor in graph.initializer:
            types[tensor.name] = tensor.data_type
        for value in itertools.chain(graph.input, graph.output, graph.value_info):
            if value.type.HasField("tensor_type"):
                types[value.name] = elem(value)
        for node in graph.node:
            if node.op_type == "Cast":
                types[node.output[0]] = attr(node, "to")
    return types


def kept_fp32(node) -> bool:
    """Our fp32 ops, and those the converter blocks by default (Range, Min, Max, TopK, ...)."""
    return (node.op_type in block_list() and node.domain in ("", "ai.onnx")) or plugin_spec.is_plugin_node(node)


@functools.lru_cache(maxsize=1)
def block_list() -> frozenset:
    """The op types onnxconverter-common's fp16 conversion leaves in fp32: its own list and ours."""
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    return frozenset(DEFAULT_OP_BLOCK_LIST) | frozenset(FP32_OP_TYPES)


def is_ln(node) -> bool:
    return (node.op_type == "LayerNormalization" and node.domain in ("", "ai.onnx")) or plugin_spec.is_plugin_node(node)


def attr(node, name):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def set_attr(node, name: str, value) -> None:
    from onnx import helper

    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value)])
