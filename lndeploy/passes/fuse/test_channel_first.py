"""The channel_first rule: LN over axis 1 of NCHW (ConvNeXt's hand-written form) and over other
non-trailing axes becomes Transpose -> LayerNormalization over the trailing axes -> Transpose, with the
per-channel scale and bias folded in; outputs equal ONNX Runtime's before (<= 1e-5) and numpy's."""

import numpy as np
import pytest

from lndeploy.pipeline import fuse
from lndeploy.passes.fuse import _testing as T

EPS = 1e-6


def convnext_ln(g, x, channels, root="div"):
    """ConvNeXt: u = x.mean(1); s = (x-u)^2.mean(1); x = (x-u)/sqrt(s+eps); w[:,None,None]*x + b[:,None,None]."""
    weight = T.normal(channels, 1, 1, seed=1) + 1.0
    bias = T.normal(channels, 1, 1, seed=2)
    y = T.layer_norm(g, x, [1], eps=EPS, keepdims=1, root=root)
    return g.op("Add", g.op("Mul", g.const(weight), y), g.const(bias)), weight, bias


@pytest.mark.parametrize("opset, root", [(16, "div"), (14, "reciprocal"), (18, "rsqrt_pow")])
def test_convnext_channel_first_ln(opset, root):
    g = T.Graph(opset)
    x = g.input("x", ["batch", 6, 5, 7])
    y, weight, bias = convnext_ln(g, x, 6, root)
    model = g.model(y)
    feed = {"x": T.normal(2, 6, 5, 7)}
    result = fuse(model)
    assert T.ops(result.model) == {"Transpose": 2, "LayerNormalization": 1}
    assert result.counts == {"layer_norm": 0, "channel_first_layer_norm": 1, "tf_layer_norm": 0, "rms_norm": 0,
                             "no_op_cast": 0, "ln_scale": 1, "ln_bias": 1, "unflatten_layer_norm": 0,
                             "ln_stats_outputs": 0}
    first, last = [n for n in result.model.graph.node if n.op_type == "Transpose"]
    assert T.attrs(first)["perm"] == [0, 2, 3, 1] and T.attrs(last)["perm"] == [0, 3, 1, 2]
    ln = T.node(result.model, "LayerNormalization")
    assert T.attrs(ln)["axis"] == -1
    np.testing.assert_array_equal(T.initializer(result.model, ln.input[1]), weight.reshape(6))
    np.testing.assert_array_equal(T.initializer(result.model, ln.input[2]), bias.reshape(6))
    before, after = T.run(model, feed), T.run(result.model, feed)
    (name,) = before
    ref = T.ref_layer_norm(feed["x"], [1], EPS, weight, bias)
    assert T.max_abs(after[name], before[name]) <= 1e-5 and T.max_abs(after[name], ref) <= 1e-5


def test_two_leading_axes_of_nchw():
    """LN over (C, H) of NCHW with a (C, H, 1) scale: LN over the last two axes of NWCH."""
    g = T.Graph(16)
    x = g.input("x", [2, 4, 3, 5])
    scale = T.normal(4, 3, 1, seed=3)
    model = g.model(g.op("Mul", T.layer_norm(g, x, [1, 2], eps=EPS), g.const(scale)))
    feed = {"x": T.normal(2, 4, 3, 5)}
    result = fuse(model)
    assert T.ops(result.model) == {"Transpose": 2, "LayerNormalization": 1}
    first = [n for n in result.model.graph.node if n.op_type == "Transpose"][0]
    assert T.attrs(first)["perm"] == [0, 3, 1, 2]
    ln = T.node(result.model, "LayerNormalization")
    assert T.attrs(ln)["axis"] == -2
    np.testing.assert_array_equal(T.initializer(result.model, ln.input[1]), scale.reshape(4, 3))
    (name,) = T.run(model, feed)
    ref = T.ref_layer_norm(feed["x"], [1, 2], EPS, scale)
    assert T.max_abs(T.run(result.model, feed)[name], ref) <= 1e-5


def test_scale_varying_along_a_spatial_axis_is_not_folded():
    """A (C, H, 1) scale after an LN over C alone is not an LN scale: the LN fuses, the Mul stays."""
    g = T.Graph(16)
    x = g.input("x", [2, 4, 3, 5])
    scale = T.normal(4, 3, 1, seed=4)
    model = g.model(g.op("Mul", T.layer_norm(g, x, [1], eps=EPS), g.const(scale)))
    feed = {"x": T.normal(2, 4, 3, 5)}
    result = fuse(model)
    assert T.ops(result.model) == {"Transpose": 2, "LayerNormalization": 1, "Mul": 1}
    assert result.counts["ln_scale"] == 0
    (name,) = T.run(model, feed)
    ref = T.ref_layer_norm(feed["x"], [1], EPS, scale)
    assert T.max_abs(T.run(result.model, feed)[name], ref) <= 1e-5
