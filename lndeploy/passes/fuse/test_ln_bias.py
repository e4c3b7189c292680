"""The ln_bias rule: an Add after a LayerNormalization with no bias yet is folded in where it
broadcasts as a bias does, and left where it does not or where the node's other outputs are used."""

import numpy as np
import pytest
from onnx import helper

from lndeploy.pipeline import fuse
from lndeploy.passes.fuse import _testing as T

EPS = 1e-5


@pytest.mark.parametrize("swapped", [False, True])
def test_bias_after_scale_is_folded(swapped):
    g = T.Graph(14)
    x = g.input("x", ["batch", 8])
    scale, bias = T.normal(8, seed=9), T.normal(8, seed=10)
    y = g.op("Mul", T.layer_norm(g, x, [-1], eps=EPS), g.const(scale))
    out = g.op("Add", g.const(bias), y) if swapped else g.op("Add", y, g.const(bias))
    model = g.model(out)
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1}
    ln = T.node(result.model, "LayerNormalization")
    np.testing.assert_array_equal(T.initializer(result.model, ln.input[2]), bias)
    feed = {"x": T.normal(4, 8)}
    assert T.max_abs(T.run(result.model, feed)[out], T.ref_layer_norm(feed["x"], [-1], EPS, scale, bias)) <= 1e-5


def test_bias_that_varies_along_batch_is_not_folded():
    g = T.Graph(16)
    x = g.input("x", [4, 8])
    model = g.model(g.op("Add", T.layer_norm(g, x, [-1], eps=EPS), g.const(T.normal(4, 1, seed=11))))
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1, "Add": 1} and result.counts["ln_bias"] == 0


def test_existing_bias_keeps_the_add():
    g = T.Graph(17)
    x = g.input("x", [2, 8])
    g.nodes.append(helper.make_node("LayerNormalization", [x, g.const(np.ones(8)), g.const(np.ones(8))], ["n"]))
    model = g.model(g.op("Add", "n", g.const(np.full(8, 3.0))))
    assert T.ops(fuse(model, opset=17).model) == {"LayerNormalization": 1, "Add": 1}


def test_node_whose_mean_output_is_used_is_not_replaced():
    g = T.Graph(17)
    x = g.input("x", [2, 8])
    g.nodes.append(helper.make_node("LayerNormalization", [x, g.const(np.ones(8))], ["n", "mean"]))
    model = g.model(g.op("Add", "n", g.const(np.full(8, 3.0))), "mean")
    result = fuse(model, opset=17)
    assert T.ops(result.model) == {"LayerNormalization": 1, "Add": 1}
    assert T.run(result.model, {"x": T.normal(2, 8)}).keys() == {"add_3", "mean"}
