"""The unflatten_layer_norm rule: ONNX's function-body sandwich Flatten -> Cast -> LN(axis=1) -> Cast ->
Reshape(Shape(x)) becomes one LN on x over its trailing dims, scale and bias reshaped to them; outputs
equal ONNX Runtime's before (<= 1e-5) and a float64 numpy LN's; what is not provably the same stays."""

import numpy as np
import pytest
from onnx import TensorProto

from lndeploy.pipeline import fuse
from lndeploy.passes.fuse import _testing as T

EPS = 1e-5
SHAPE = (2, 3, 4, 5)


def sandwich(g, x, axis, scale=None, bias=None, to=TensorProto.FLOAT, shape_attrs=None, also_2d=False):
    """What ONNX's LayerNormalization function body leaves once the statistics are fused."""
    xu = g.op("Cast", g.op("Flatten", x, axis=axis), to=to)
    y = g.op("Cast", T.layer_norm(g, xu, [-1], eps=g.op("Cast", g.const(EPS), to=to)), to=TensorProto.FLOAT)
    if scale is not None:
        y = g.op("Mul", y, scale)
    if bias is not None:
        y = g.op("Add", y, bias)
    out = g.op("Reshape", y, g.op("Shape", x, **(shape_attrs or {})))
    return (out, y) if also_2d else out


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -3])
def test_sandwich_becomes_one_ln_on_x(axis):
    g = T.Graph(18)
    x = g.input("x", ["batch", *SHAPE[1:]]) if axis != 0 else g.input("x", list(SHAPE))
    first = axis % 4
    dims = SHAPE[first:]
    scale, bias = T.normal(1, int(np.prod(dims)), seed=1), T.normal(int(np.prod(dims)), seed=2)
    model = g.model(sandwich(g, x, axis, g.const(scale), g.const(bias)))
    feed = {"x": T.normal(*SHAPE)}
    result = fuse(model)  # verify=True: ParityError above 1e-5
    assert T.ops(result.model) == {"LayerNormalization": 1} and result.counts["unflatten_layer_norm"] == 1
    ln = T.node(result.model, "LayerNormalization")
    assert ln.input[0] == "x" and T.attrs(ln)["axis"] == first - 4
    np.testing.assert_array_equal(T.initializer(result.model, ln.input[1]), scale.reshape(dims))
    before, after = T.run(model, feed), T.run(result.model, feed)
    (name,) = before
    ref = T.ref_layer_norm(feed["x"], range(first, 4), EPS, scale.reshape(dims), bias.reshape(dims))
    assert T.max_abs(after[name], before[name]) <= 1e-5 and T.max_abs(after[name], ref) <= 1e-5


def test_scale_from_a_graph_input_is_reshaped_and_plugin_takes_it():
    """A scale that is a graph input (ONNX's test models): Flatten(W) -> Reshape to x's trailing dims."""
    g = T.Graph(18)
    x, w = g.input("x", ["batch", 3, 4, 5]), g.input("w", [3, 4, 5])
    model = g.model(sandwich(g, x, 1, g.op("Flatten", w, axis=0)))
    feed = {"x": T.normal(*SHAPE), "w": T.normal(3, 4, 5, seed=3)}
    for to, ln_op in (("native", "LayerNormalization"), ("plugin", "lndeploy.LndeployLayerNorm")):
        result = fuse(model, to=to)
        ops = T.ops(result.model)
        assert ops[ln_op] == 1 and not {"Shape", "Cast", "ReduceMean"} & set(ops), ops
        got = T.run(result.model, feed)[result.model.graph.output[0].name]
        assert T.max_abs(got, T.ref_layer_norm(feed["x"], [1, 2, 3], EPS, feed["w"])) <= 1e-5


def near_miss(**kw):
    return lambda g, x: sandwich(g, x, 1, **kw)


NEAR_MISSES = {  # name -> (build, reason given)
    "Casts to double and back": (near_miss(to=TensorProto.DOUBLE), "changes the type"),
    "the Shape is a slice": (near_miss(shape_attrs={"start": 0, "end": 4}), "slice of x's shape"),
    "the 2-D LN output also used": (near_miss(also_2d=True), "also used elsewhere"),
}


@pytest.mark.parametrize("case", list(NEAR_MISSES))
def test_near_misses_keep_the_sandwich(case):
    build, reason = NEAR_MISSES[case]
    g = T.Graph(18)
    x = g.input("x", list(SHAPE))
    out = build(g, x)
    model = g.model(*out) if isinstance(out, tuple) else g.model(out)
    result = fuse(model)
    ops = T.ops(result.model)
    assert result.counts["unflatten_layer_norm"] == 0 and {"Flatten", "Reshape"} <= set(ops), ops
    assert any(reason in left["reason"] for left in result.unconverted), result.unconverted
