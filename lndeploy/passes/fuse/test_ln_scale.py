"""The ln_scale rule: a Mul after a normalization with no scale yet is folded in where it broadcasts
as a scale does (constants and computed tensors), and left where it does not."""

import numpy as np
import pytest
from onnx import helper

from lndeploy.pipeline import fuse
from lndeploy.passes.fuse import _testing as T

EPS = 1e-5


def only(outputs: dict):
    (value,) = outputs.values()
    return value


def ln_times(scale_of, x_shape=(2, 5, 8), swapped=False):
    g = T.Graph(16)
    x = g.input("x", ["batch", *x_shape[1:]])
    scale = scale_of(g)
    y = T.layer_norm(g, x, [-1], eps=EPS)
    return g.model(g.op("Mul", scale, y) if swapped else g.op("Mul", y, scale))


@pytest.mark.parametrize("shape", [(8,), (1, 1, 8), (), (1,)])
@pytest.mark.parametrize("swapped", [False, True])
def test_constant_scales_that_broadcast_are_folded(shape, swapped):
    value = T.normal(*shape, seed=6) if shape else np.float32(1.5)
    model = ln_times(lambda g: g.const(value), swapped=swapped)
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1} and result.counts["ln_scale"] == 1
    ln = T.node(result.model, "LayerNormalization")
    np.testing.assert_array_equal(T.initializer(result.model, ln.input[1]),
                                  np.broadcast_to(np.reshape(value, (-1,)), (8,)))
    feed = {"x": T.normal(3, 5, 8)}
    assert T.max_abs(only(T.run(result.model, feed)),
                     T.ref_layer_norm(feed["x"], [-1], EPS, value)) <= 1e-5


@pytest.mark.parametrize("shape, added", [((8,), {}), ((1, 8), {"Reshape": 1}), ((1,), {"Expand": 1})])
def test_computed_scales_are_reshaped_or_expanded(shape, added):
    model = ln_times(lambda g: g.input("w", list(shape)))
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1, **added}
    feed = {"x": T.normal(3, 5, 8), "w": T.normal(*shape, seed=7)}
    want = T.ref_layer_norm(feed["x"], [-1], EPS, feed["w"])
    assert T.max_abs(only(T.run(result.model, feed)), want) <= 1e-5


def test_scale_that_varies_along_batch_is_not_folded():
    model = ln_times(lambda g: g.const(T.normal(2, 1, 8, seed=8)), x_shape=(2, 5, 8))
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1, "Mul": 1} and result.counts["ln_scale"] == 0


def existing_norm(op_type, opset, scale, extra=()):
    g = T.Graph(opset)
    x = g.input("x", [2, 8])
    g.nodes.append(helper.make_node(op_type, [x, g.const(scale), *extra], ["n"], axis=-1, epsilon=EPS))
    return g, g.model(g.op("Mul", "n", g.const(np.full(8, 3.0))))


@pytest.mark.parametrize("op_type, opset", [("LayerNormalization", 17), ("RMSNormalization", 23)])
def test_existing_node_with_unit_scale_takes_the_mul(op_type, opset):
    _, model = existing_norm(op_type, opset, np.ones(8))
    result = fuse(model, opset=opset)
    assert T.ops(result.model) == {op_type: 1}
    node = T.node(result.model, op_type)
    np.testing.assert_array_equal(T.initializer(result.model, node.input[1]), np.full(8, 3.0))


def test_existing_node_with_its_own_scale_keeps_the_mul():
    _, model = existing_norm("LayerNormalization", 17, np.full(8, 2.0))
    result = fuse(model, opset=17)
    assert T.ops(result.model) == {"LayerNormalization": 1, "Mul": 1}
