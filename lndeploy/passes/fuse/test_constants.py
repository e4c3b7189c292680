"""What counts as a constant eps, exponent or axes, and which epsilon LayerNormalization can hold.

Constant-foldable subgraphs count (``CastLike(Constant, x)`` as onnxscript-authored models write eps,
``Cast(int 2)`` as an exponent, ``Reshape(Constant, Constant)`` as axes); a graph input does not (the
caller may feed anything), and the note says which one. An eps the float32 attribute cannot hold
(1e-50 in a double LN rounds to 0) is refused with a reason."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from lndeploy.passes.fuse import _testing as T
from lndeploy.pipeline import fuse


def build(eps=None, exponent=None, axes=None, x_type=TensorProto.FLOAT, eps_value=1e-5):
    """The trailing-axis LN with each of eps / exponent / axes given by a builder ``f(g, x)``."""
    g = T.Graph(18)
    x = g.input("x", [4, 16], x_type)
    dtype = np.float64 if x_type == TensorProto.DOUBLE else np.float32
    ax = axes(g, x) if axes else g.const([-1], np.int64)
    d = g.op("Sub", x, g.op("ReduceMean", x, ax))
    var = g.op("ReduceMean", g.op("Pow", d, exponent(g, x) if exponent else g.const(2.0, dtype)), ax)
    e = eps(g, x) if eps else g.const(eps_value, dtype)
    y = g.op("Div", d, g.op("Sqrt", g.op("Add", var, e)))
    return g.model(y, shape=[4, 16], dtype=x_type)


def constant_node(g, value, dtype):
    return g.op("Constant", value=helper.make_tensor("k", dtype, [], [value]))


FOLDABLE = {
    "eps CastLike(Constant, x)": {"eps": lambda g, x: g.op("CastLike", constant_node(g, 1e-5, TensorProto.DOUBLE), x)},
    "exponent Cast(int 2)": {"exponent": lambda g, x: g.op("Cast", g.const(2, np.int64), to=TensorProto.FLOAT)},
    "axes Reshape(Constant, Constant)": {"axes": lambda g, x: g.op("Reshape", g.const([-1], np.int64),
                                                                   g.const([1], np.int64))},
    # Shape(x) of an x whose dims are static: [16] - 17 = [-1]
    "axes from Shape(x, start=-1)": {"axes": lambda g, x: g.op("Sub", g.op("Shape", x, start=-1),
                                                               g.const([17], np.int64))},
}


@pytest.mark.parametrize("case", sorted(FOLDABLE))
def test_constant_foldable_subgraphs_count_as_constants(case):
    model = build(**FOLDABLE[case])
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1} and not result.unconverted
    x = T.normal(4, 16)
    want = T.ref_layer_norm(x, [-1], 1e-5)
    assert T.max_abs(T.run(result.model, {"x": x})[model.graph.output[0].name], want) <= 1e-5 * np.abs(want).max()


NOT_CONSTANT = {
    "epsilon is not a constant": {"eps": lambda g, x: g.input("eps", [], TensorProto.FLOAT)},
    "the square uses a non-constant": {"exponent": lambda g, x: g.input("p", [], TensorProto.FLOAT)},
    "the ReduceMean axes are not constant": {"axes": lambda g, x: g.input("axes", [1], TensorProto.INT64)},
    "epsilon is not a constant ": {"eps": lambda g, x: g.op("Mul", g.input("s", [], TensorProto.FLOAT), g.const(1e-5))},
}


@pytest.mark.parametrize("reason", sorted(NOT_CONSTANT))
def test_what_cannot_be_folded_is_left_with_a_note(reason):
    model = build(**NOT_CONSTANT[reason])
    result = fuse(model)
    assert result.model == model
    (note,) = result.unconverted
    assert note["rule"] == "layer_norm" and reason.strip() in note["reason"], note


@pytest.mark.parametrize("eps, held", [(1e-50, "0"), (1e-45, "1.4013e-45")])
def test_double_eps_the_float_attribute_cannot_hold_is_refused(eps, held):
    """ONNX Runtime refuses this fusion too: with epsilon=0 a constant row gives 0/0 = NaN where the
    double original gives 0. 1e-45 is a float32 subnormal off by 40%."""
    model = build(x_type=TensorProto.DOUBLE, eps_value=eps)
    result = fuse(model)
    assert result.model == model
    (note,) = result.unconverted
    assert note["reason"] == (f"epsilon {eps:g} does not fit LayerNormalization's float attribute "
                              f"(it would be {held})")


def test_double_eps_the_attribute_holds_within_1e_3_fuses():
    model = build(x_type=TensorProto.DOUBLE, eps_value=1e-12)
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1}
    assert T.attrs(T.node(result.model, "LayerNormalization"))["epsilon"] == pytest.approx(1e-12, rel=1e-3)


def rank_axes(g, x):
    """ONNX's RMSNormalization function body: axes = Range(axis, Size(Shape(x)), 1), here axis = rank - 1."""
    rank = g.op("Size", g.op("Shape", x))
    return g.op("Range", g.op("Sub", rank, g.const(1, np.int64)), rank, g.const(1, np.int64))


def test_axes_from_the_rank_fold_where_only_the_rank_is_known():
    """Size(Shape(x)) is x's rank even where its dims are symbolic; without any shape it is unknown."""
    g = T.Graph(18)
    x = g.input("x", ["batch", "n"])
    ax = rank_axes(g, x)
    d = g.op("Sub", x, g.op("ReduceMean", x, ax))
    y = g.op("Div", d, g.op("Sqrt", g.op("Add", g.op("ReduceMean", g.op("Mul", d, d), ax), g.const(1e-5))))
    result = fuse(T.shapeless_model(g, y))  # the output's rank is unknown to shape inference: Range
    assert T.ops(result.model)["LayerNormalization"] == 1 and "ReduceMean" not in T.ops(result.model)
    x_value = T.normal(3, 7)
    want = T.ref_layer_norm(x_value, [-1], 1e-5)
    assert T.max_abs(T.run(result.model, {"x": x_value})[y], want) <= 1e-5 * np.abs(want).max()
    g.inputs[0] = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)  # the same graph, shape-less x
    shapeless = T.shapeless_model(g, y)
    result = fuse(shapeless)
    assert result.model == shapeless and "the ReduceMean axes are not constant" in result.unconverted[0]["reason"]
