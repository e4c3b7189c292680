"""The spellings of the statistics (``_stats``): means as ReduceSum / N or * (1/N), keepdims=0 put back
by Unsqueeze, the square of ``mean - x`` or of ``x - mean`` whichever the numerator uses. Each fuses
into one LN (through the layer_norm or the channel-first rule) that computes what ONNX Runtime
computed before (<= 1e-5) and what a float64 numpy LN computes; every near-miss stays as it was."""

import itertools

import numpy as np
import pytest

from lndeploy.pipeline import fuse
from lndeploy.passes.fuse import _testing as T

EPS = 1e-5
SPELLINGS = ("mean", "sum_div", "sum_mul", "sum_mul_first", "mean_unsqueeze", "sum_unsqueeze_div",
             "sum_div_unsqueeze")


def mean(g, t, x_shape, axes, how, n=None, factor=None, put_back=None):
    """The mean of ``t`` over ``axes`` spelled as ``how``; ``n``/``factor``/``put_back`` make near-misses."""
    n = n if n is not None else int(np.prod([x_shape[a] for a in axes]))
    factor = factor if factor is not None else np.float32(1) / np.float32(n)
    put_back = put_back if put_back is not None else axes
    if how == "mean":
        return g.reduce_mean(t, axes)
    if how == "mean_keepdims0":  # no Unsqueeze: a near-miss
        return g.reduce_mean(t, axes, keepdims=0)
    if how == "mean_unsqueeze":
        return g.unsqueeze(g.reduce_mean(t, axes, keepdims=0), put_back)
    if how == "sum_unsqueeze_div":
        return g.op("Div", g.unsqueeze(g.reduce("ReduceSum", t, axes, keepdims=0), put_back), g.const(float(n)))
    if how == "sum_div_unsqueeze":
        return g.unsqueeze(g.op("Div", g.reduce("ReduceSum", t, axes, keepdims=0), g.const(float(n))), put_back)
    total = g.reduce("ReduceSum", t, axes, keepdims=1)
    if how == "sum_div":
        return g.op("Div", total, g.const(float(n)))
    if how == "sum_mul":
        return g.op("Mul", total, g.const(factor))
    assert how == "sum_mul_first"
    return g.op("Mul", g.const(factor), total)


def spelled_ln(g, x, shape, axes, mean_how="mean", var_how=None, *, square_of="num", negate=False,
               var_axes=None, **near_miss):
    """LN of ``x`` with its statistics spelled as asked. ``square_of``: "num" (the numerator itself),
    "x-m" or "m-x" (a Sub of its own on the same mean); ``negate``: the numerator is ``mean - x``."""
    m = mean(g, x, shape, axes, mean_how, **near_miss)
    num = g.op("Sub", m, x) if negate else g.op("Sub", x, m)
    diff = {"num": lambda: num, "x-m": lambda: g.op("Sub", x, m), "m-x": lambda: g.op("Sub", m, x)}[square_of]()
    var_axes = var_axes if var_axes is not None else axes
    var = mean(g, g.op("Mul", diff, diff), shape, var_axes, var_how or mean_how)
    return T.divide_by_root(g, num, g.op("Add", var, g.const(EPS)))


def check(model, feed, axes, sign=1.0):
    result = fuse(model)  # verify=True: ParityError above 1e-5
    before, after = T.run(model, feed), T.run(result.model, feed)
    (name,) = before
    ref = sign * T.ref_layer_norm(feed["x"], axes, EPS)
    assert T.max_abs(after[name], before[name]) <= 1e-5
    assert T.max_abs(after[name], ref) <= 1e-5
    return result


@pytest.mark.parametrize("mean_how, var_how", list(itertools.product(SPELLINGS, SPELLINGS)))
def test_every_mean_spelling_for_mean_and_variance(mean_how, var_how):
    g = T.Graph(13)
    x = g.input("x", ["batch", 4, 6])
    model = g.model(spelled_ln(g, x, [None, 4, 6], [-2, -1], mean_how, var_how))
    result = check(model, {"x": T.normal(3, 4, 6)}, [1, 2])
    assert T.ops(result.model) == {"LayerNormalization": 1} and result.counts["layer_norm"] == 1
    assert T.attrs(T.node(result.model, "LayerNormalization"))["axis"] == -2


@pytest.mark.parametrize("opset", [11, 12, 13, 18])
@pytest.mark.parametrize("how", ["sum_div", "sum_mul", "mean_unsqueeze", "sum_unsqueeze_div"])
@pytest.mark.parametrize("axes", [[-1], [1]])
def test_axes_as_attribute_or_input_trailing_or_channel_first(opset, how, axes):
    """ReduceSum and Unsqueeze take axes as an input from opset 13, ReduceMean from 18."""
    g = T.Graph(opset)
    x = g.input("x", ["batch", 5, 7])
    model = g.model(spelled_ln(g, x, [None, 5, 7], axes, how))
    result = check(model, {"x": T.normal(2, 5, 7)}, axes)
    channel_first = axes == [1]
    assert result.counts["channel_first_layer_norm" if channel_first else "layer_norm"] == 1
    assert T.ops(result.model) == ({"Transpose": 2, "LayerNormalization": 1} if channel_first
                                   else {"LayerNormalization": 1})


@pytest.mark.parametrize("square_of, negate", [("m-x", False), ("x-m", False), ("num", True),
                                                ("x-m", True), ("m-x", True)])
@pytest.mark.parametrize("how", ["mean", "sum_div"])
def test_the_sign_of_the_squared_difference_does_not_matter(square_of, negate, how):
    """(mean - x)^2 = (x - mean)^2; a numerator ``mean - x`` is -LN(x): LN with a scale of -1."""
    g = T.Graph(17)
    x = g.input("x", ["batch", 16])
    model = g.model(spelled_ln(g, x, [None, 16], [-1], how, square_of=square_of, negate=negate))
    result = check(model, {"x": T.normal(4, 16)}, [-1], sign=-1.0 if negate else 1.0)
    assert T.ops(result.model) == {"LayerNormalization": 1}
    scale = T.initializer(result.model, T.node(result.model, "LayerNormalization").input[1])
    np.testing.assert_array_equal(scale, np.full(16, -1.0 if negate else 1.0, np.float32))


def other_mean_in_the_square(g, x):
    """var = mean((m2 - x)^2), m2 over another axis than the numerator's mean."""
    num = g.op("Sub", x, g.reduce_mean(x, [-1]))
    diff = g.op("Sub", g.reduce_mean(x, [-2]), x)
    var = g.reduce_mean(g.op("Mul", diff, diff), [-1])
    return T.divide_by_root(g, num, g.op("Add", var, g.const(EPS)))


def other_tensor_in_the_square(g, x):
    """var = mean((mean - 2x)^2): not the same x."""
    m = g.reduce_mean(x, [-1])
    diff = g.op("Sub", m, g.op("Mul", x, g.const(2.0)))
    var = g.reduce_mean(g.op("Mul", diff, diff), [-1])
    return T.divide_by_root(g, g.op("Sub", x, m), g.op("Add", var, g.const(EPS)))


def variance_put_back_wrong(g, x):
    num = g.op("Sub", x, g.reduce_mean(x, [-1]))
    var = g.unsqueeze(g.reduce_mean(g.op("Mul", num, num), [-1], keepdims=0), [0])
    return T.divide_by_root(g, num, g.op("Add", var, g.const(EPS)))


def spelled(mean_how, var_how=None, **kw):
    return lambda g, x: spelled_ln(g, x, [16, 16], [-1], mean_how, var_how, **kw)


NEAR_MISSES = {  # name -> (build, reason the rule gives, or None where the pattern does not match at all)
    "mean as ReduceSum / (N-1)": (spelled("sum_div", "mean", n=15), "divided by 15, not by 16"),
    "mean as ReduceSum * 1/(N-1)": (spelled("sum_mul", "mean", n=15), "not by 1/16"),
    "mean as ReduceSum * (1/N)(1 + 1e-5)": (spelled("sum_mul_first", "mean", factor=1.00001 / 16),
                                             "not by 1/16"),
    "ReduceSum mean over another axis than the variance": (
        spelled("sum_div", "mean", var_axes=[-2]), "the mean is over axes"),
    "keepdims=0 without Unsqueeze": (spelled("mean_keepdims0", "mean"), "no Unsqueeze puts them back"),
    "keepdims=0, Unsqueeze at another axis": (spelled("mean_unsqueeze", "mean", put_back=[0]),
                                              "puts dims back at [0]"),
    "keepdims=0 for the variance, Unsqueeze at another axis": (variance_put_back_wrong,
                                                               "puts dims back at [0]"),
    "square of (m2 - x), m2 over another axis": (other_mean_in_the_square, "the mean is over axes"),
    "square of (mean - 2x)": (other_tensor_in_the_square, "no LayerNorm spelling the rules know"),
}


@pytest.mark.parametrize("case", list(NEAR_MISSES))
def test_near_misses_stay_untouched(case):
    T.assert_near_miss_untouched(*NEAR_MISSES[case], opset=13)


def test_sum_over_a_dynamic_dim_is_left():
    """N must be known: a sum over a dynamic dim divided by the export-time size is not a mean."""
    g = T.Graph(13)
    x = g.input("x", ["batch", 16])
    model = g.model(spelled_ln(g, x, [8, 16], [0, 1], "sum_div", "mean"))
    result = fuse(model)
    assert result.model == model and "not static" in result.unconverted[0]["reason"]
