"""Helpers for the rule tests: build unfused graphs with ``onnx.helper``, run them on ONNX Runtime,
and compare with a float64 numpy LayerNorm. Test support only; nothing in the library imports it."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOTS = ("div", "reciprocal", "reciprocal_first", "rsqrt_pow", "div_one", "pow_half")


class Graph:
    """A tiny graph builder: every op returns the name of its (single) output."""

    def __init__(self, opset: int = 16):
        self.opset = opset
        self.nodes, self.initializers, self.inputs = [], [], []
        self._count = 0

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def input(self, name: str, shape, dtype=TensorProto.FLOAT) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, dtype, shape))
        return name

    def const(self, value, dtype=np.float32, name: str | None = None) -> str:
        tensor = numpy_helper.from_array(np.asarray(value, dtype=dtype), name or self._name("c"))
        self.initializers.append(tensor)
        return tensor.name

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        out = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out + "_node", **attrs))
        return out

    def reduce_mean(self, x: str, axes, keepdims: int | None = None) -> str:
        """Axes as an attribute below opset 18 (legacy exports), as an input from 18 on."""
        return self.reduce("ReduceMean", x, axes, keepdims)

    def reduce(self, op_type: str, x: str, axes, keepdims: int | None = None) -> str:
        """ReduceMean takes its axes as an input from opset 18 on, ReduceSum from 13 on."""
        attrs = {} if keepdims is None else {"keepdims": keepdims}
        if self.opset >= {"ReduceMean": 18, "ReduceSum": 13}[op_type]:
            return self.op(op_type, x, self.const(axes, np.int64), **attrs)
        return self.op(op_type, x, axes=list(axes), **attrs)

    def unsqueeze(self, x: str, axes) -> str:
        """Axes as an attribute below opset 13, as an input from 13 on."""
        if self.opset >= 13:
            return self.op("Unsqueeze", x, self.const(axes, np.int64))
        return self.op("Unsqueeze", x, axes=list(axes))

    def model(self, *outputs: str, shape=None, dtype=TensorProto.FLOAT) -> onnx.ModelProto:
        """The model; outputs are typed by shape inference, or all given ``shape`` (and ``dtype``)."""
        graph = helper.make_graph(self.nodes, "g", self.inputs,
                                  [helper.make_tensor_value_info(o, dtype, shape) for o in outputs],
                                  self.initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opsets,
                                  ir_version=helper.find_min_ir_version_for(opsets))
        if model.ir_version < 4:  # IR 3 (opset <= 8): every initializer is also listed as an input
            model.graph.input.extend(helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
                               for i in self.initializers)
        if shape is None:  # the checker wants typed outputs: from inference, keeping no value_info
            typed = onnx.shape_inference.infer_shapes(model, strict_mode=True)
            model.graph.ClearField("output")
            model.graph.output.extend(typed.graph.output)
        onnx.checker.check_model(model, full_check=True)
        return model


def shapeless_model(g: Graph, *outputs: str, dtype=TensorProto.FLOAT) -> onnx.ModelProto:
    """``g``'s model with outputs declared without a shape, as some exporters write them (ONNX's
    checker wants one; ONNX Runtime loads such files)."""
    graph = helper.make_graph(g.nodes, "g", g.inputs, [helper.make_tensor_value_info(o, dtype, None) for o in outputs],
                              g.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", g.opset)], ir_version=10)


def square(g: Graph, d: str, how: str = "pow", exponent: float = 2.0) -> str:
    return g.op("Pow", d, g.const(exponent)) if how == "pow" else g.op("Mul", d, d)


def divide_by_root(g: Graph, num: str, plus_eps: str, root: str = "div") -> str:
    """``num / sqrt(plus_eps)`` in one of ROOTS."""
    if root == "div":
        return g.op("Div", num, g.op("Sqrt", plus_eps))
    if root == "pow_half":
        return g.op("Div", num, g.op("Pow", plus_eps, g.const(0.5)))
    if root == "rsqrt_pow":
        return g.op("Mul", num, g.op("Pow", plus_eps, g.const(-0.5)))
    if root == "div_one":
        return g.op("Mul", num, g.op("Div", g.const(1.0), g.op("Sqrt", plus_eps)))
    inverse = g.op("Reciprocal", g.op("Sqrt", plus_eps))
    return g.op("Mul", inverse, num) if root == "reciprocal_first" else g.op("Mul", num, inverse)


def layer_norm(g: Graph, x: str, axes, *, eps=1e-5, how: str = "pow", root: str = "div",
               eps_first: bool = False, var_axes=None, keepdims: int | None = None) -> str:
    """The primitive-op LN of torch's legacy exporter and its variants. ``eps`` may be a value name."""
    mean = g.reduce_mean(x, axes, keepdims)
    d = g.op("Sub", x, mean)
    var = g.reduce_mean(square(g, d, how), var_axes if var_axes is not None else axes, keepdims)
    eps_name = eps if isinstance(eps, str) else g.const(eps)
    plus_eps = g.op("Add", eps_name, var) if eps_first else g.op("Add", var, eps_name)
    return divide_by_root(g, d, plus_eps, root)


def rms_norm(g: Graph, x: str, axes, *, eps=1e-6, how: str = "pow", root: str = "reciprocal") -> str:
    ms = g.reduce_mean(square(g, x, how), axes)
    return divide_by_root(g, x, g.op("Add", ms, g.const(eps)), root)


def ref_layer_norm(x, axes, eps, scale=None, bias=None) -> np.ndarray:
    x = x.astype(np.float64)
    axes = tuple(axes)
    d = x - x.mean(axis=axes, keepdims=True)
    y = d / np.sqrt((d * d).mean(axis=axes, keepdims=True) + eps)
    return _affine(y, scale, bias)


def ref_rms_norm(x, axes, eps, scale=None) -> np.ndarray:
    x = x.astype(np.float64)
    return _affine(x / np.sqrt((x * x).mean(axis=tuple(axes), keepdims=True) + eps), scale, None)


def _affine(y, scale, bias):
    if scale is not None:
        y = y * scale
    if bias is not None:
        y = y + bias
    return y


def run(model, feed: dict) -> dict:
    from lndeploy.backends.onnxruntime import OrtSession

    return OrtSession(model).run(feed)


def ops(model) -> dict:
    from lndeploy.passes.fuse import histogram

    return histogram(model)


def normal(*shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def max_abs(a, b) -> float:
    from lndeploy import parity

    return parity.compare_arrays(a, b, parity.Tolerance(0.0)).max_abs


def node(model, op_type: str):
    found = [n for n in model.graph.node if n.op_type == op_type]
    assert len(found) == 1, [n.op_type for n in model.graph.node]
    return found[0]


def attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def initializer(model, name: str) -> np.ndarray:
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    raise KeyError(name)


def assert_near_miss_untouched(build, reason: str | None, opset: int) -> None:
    """``build(g, x)`` on a [16, 16] input must come back byte for byte (no opset bump, no fused node),
    with ``reason`` in the one refusal reported (``None``: nothing reported at all)."""
    from lndeploy.pipeline import fuse

    g = Graph(opset)
    x = g.input("x", [16, 16])
    model = g.model(build(g, x))
    result = fuse(model)
    assert result.model == model
    assert not any(result.counts.values())
    if reason is None:
        assert result.unconverted == []
    else:
        assert len(result.unconverted) == 1 and reason in result.unconverted[0]["reason"], result.unconverted
