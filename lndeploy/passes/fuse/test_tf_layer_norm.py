"""The tf_layer_norm rule: Keras' LayerNormalization as tf2onnx writes it (tf.nn.moments, then
tf.nn.batch_normalization's ``x * inv + (beta - mean * inv)``) becomes one LN with gamma and beta;
outputs equal ONNX Runtime's before (<= 1e-5) and a float64 numpy LN's; near-misses stay."""

import numpy as np
import pytest

from lndeploy.pipeline import fuse
from lndeploy.passes.fuse import _testing as T

EPS = 1e-3  # Keras' default


def rsqrt(g, plus_eps, how):
    if how == "pow":
        return g.op("Pow", plus_eps, g.const(-0.5))
    if how == "div_one":
        return g.op("Div", g.const(1.0), g.op("Sqrt", plus_eps))
    return g.op("Reciprocal", g.op("Sqrt", plus_eps))


def tf_ln(g, x, axes, gamma=None, beta=None, *, style="tf", variance="separate", root="reciprocal",
          swapped=False, var_axes=None, var_divisor=None, eps=EPS):
    """``style``: "tf" (beta - mean * inv, tf.nn.batch_normalization) or "keras3" (-mean * inv + beta)."""
    mean = g.reduce_mean(x, axes)
    var_axes = var_axes if var_axes is not None else axes
    if variance == "separate":  # tf.nn.moments: squared_difference(x, mean)
        d = g.op("Sub", x, mean)
        var = g.reduce_mean(g.op("Mul", d, d), var_axes)
    else:
        var = g.op("Sub", g.reduce_mean(g.op("Mul", x, x), var_axes), g.op("Mul", mean, mean))
    if var_divisor is not None:  # a near-miss: rescaled variance
        var = g.op("Mul", var, g.const(var_divisor))
    inv = rsqrt(g, g.op("Add", var, eps if isinstance(eps, str) else g.const(eps)), root)
    if gamma is not None:
        inv = g.op("Mul", inv, gamma) if style == "tf" else g.op("Mul", gamma, inv)
    if style == "tf":
        mean_inv = g.op("Mul", mean, inv)
        shift = g.op("Sub", beta, mean_inv) if beta is not None else g.op("Neg", mean_inv)
    else:
        shift = g.op("Mul", g.op("Neg", mean), inv)
        shift = g.op("Add", shift, beta) if beta is not None else shift
    scaled = g.op("Mul", x, inv)
    return g.op("Add", shift, scaled) if swapped else g.op("Add", scaled, shift)


def check(model, feed, axes, gamma, beta):
    result = fuse(model)  # verify=True: ParityError above 1e-5
    before, after = T.run(model, feed), T.run(result.model, feed)
    (name,) = before
    assert T.max_abs(after[name], before[name]) <= 1e-5
    assert T.max_abs(after[name], T.ref_layer_norm(feed["x"], axes, EPS, gamma, beta)) <= 1e-5
    assert result.counts["tf_layer_norm"] == 1
    return result


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("style", ["tf", "keras3"])
@pytest.mark.parametrize("variance", ["separate", "moments"])
@pytest.mark.parametrize("root", ["reciprocal", "pow", "div_one"])
def test_keras_layer_norm_becomes_one_node(opset, style, variance, root):
    g = T.Graph(opset)
    x = g.input("x", ["batch", 5, 16])
    gamma, beta = T.normal(16, seed=1) + 1, T.normal(16, seed=2)
    model = g.model(tf_ln(g, x, [-1], g.const(gamma), g.const(beta), style=style, variance=variance, root=root))
    result = check(model, {"x": T.normal(3, 5, 16)}, [-1], gamma, beta)
    assert T.ops(result.model) == {"LayerNormalization": 1}
    ln = T.node(result.model, "LayerNormalization")
    assert T.attrs(ln)["axis"] == -1 and T.attrs(ln)["epsilon"] == pytest.approx(EPS)
    np.testing.assert_array_equal(T.initializer(result.model, ln.input[1]), gamma)
    np.testing.assert_array_equal(T.initializer(result.model, ln.input[2]), beta)


@pytest.mark.parametrize("with_gamma, with_beta", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("style", ["tf", "keras3"])
def test_scale_or_center_off(with_gamma, with_beta, style):
    g = T.Graph(17)
    x = g.input("x", ["batch", 12])
    gamma = T.normal(12, seed=3) if with_gamma else None
    beta = T.normal(12, seed=4) if with_beta else None
    y = tf_ln(g, x, [-1], g.const(gamma) if with_gamma else None, g.const(beta) if with_beta else None,
              style=style, swapped=True)
    result = check(g.model(y), {"x": T.normal(4, 12)}, [-1], gamma, beta)
    assert T.ops(result.model) == {"LayerNormalization": 1}


def test_several_trailing_axes_and_channel_first():
    """axis=[-2, -1] with a (4, 6) gamma; axis=1 of (B, C, L) with a (C, 1) gamma (Transposes around)."""
    g = T.Graph(17)
    x = g.input("x", ["batch", 4, 6])
    gamma, beta = T.normal(4, 6, seed=5), T.normal(4, 6, seed=6)
    model = g.model(tf_ln(g, x, [-2, -1], g.const(gamma), g.const(beta)))
    result = check(model, {"x": T.normal(2, 4, 6)}, [1, 2], gamma, beta)
    assert T.attrs(T.node(result.model, "LayerNormalization"))["axis"] == -2
    g = T.Graph(17)
    x = g.input("x", ["batch", 4, 6])
    gamma, beta = T.normal(4, 1, seed=7), T.normal(1, 4, 1, seed=8)
    model = g.model(tf_ln(g, x, [1], g.const(gamma), g.const(beta)))
    result = check(model, {"x": T.normal(2, 4, 6)}, [1], gamma, beta)
    assert T.ops(result.model) == {"Transpose": 2, "LayerNormalization": 1}


def other_inv_in_the_shift(g, x):
    """beta - mean * inv' with inv' lacking gamma: not the same inv, not LN."""
    mean = g.reduce_mean(x, [-1])
    d = g.op("Sub", x, mean)
    r = rsqrt(g, g.op("Add", g.reduce_mean(g.op("Mul", d, d), [-1]), g.const(EPS)), "reciprocal")
    inv = g.op("Mul", r, g.const(T.normal(16, seed=9)))
    return g.op("Add", g.op("Mul", x, inv), g.op("Sub", g.const(T.normal(16, seed=10)), g.op("Mul", mean, r)))


def gamma_along_batch(g, x):
    return tf_ln(g, x, [-1], g.const(T.normal(16, 1, seed=11)), g.const(T.normal(16, seed=12)))


NEAR_MISSES = {  # name -> (build, reason the rule gives, or None where the pattern does not match at all)
    "unbiased variance (rescaled)": (lambda g, x: tf_ln(g, x, [-1], var_divisor=16 / 15), "no LayerNorm spelling the rules know"),
    "variance over another axis": (lambda g, x: tf_ln(g, x, [-1], var_axes=[-2]), "the mean is over axes"),
    "eps a graph input": (lambda g, x: tf_ln(g, x, [-1], eps=g.input("eps", [])), "epsilon is not a constant"),
    "the shift uses another inv": (other_inv_in_the_shift, "no LayerNorm spelling the rules know"),
    "gamma varies along the batch axis": (gamma_along_batch, "varies along a non-normalized axis"),
}


@pytest.mark.parametrize("case", list(NEAR_MISSES))
def test_near_misses_stay_untouched(case):
    T.assert_near_miss_untouched(*NEAR_MISSES[case], opset=17)
