"""The layer_norm rule on graphs built with onnx.helper: every spelling fuses into one node that
computes what ONNX Runtime computed before (<= 1e-5) and what a float64 numpy LN computes; every
near-miss is left exactly as it was."""

import numpy as np
import pytest

from lndeploy.pipeline import fuse
from lndeploy.passes.fuse import _testing as T

EPS = 1e-5


def fused_and_checked(model, feed, ref):
    result = fuse(model)  # verify=True: ParityError above 1e-5
    before, after = T.run(model, feed), T.run(result.model, feed)
    (name,) = before
    assert T.max_abs(after[name], before[name]) <= 1e-5
    assert T.max_abs(after[name], ref) <= 1e-5
    return result


@pytest.mark.parametrize("opset", [14, 18])
@pytest.mark.parametrize("how", ["pow", "mul"])
@pytest.mark.parametrize("root", T.ROOTS)
def test_every_spelling_becomes_one_layer_normalization(opset, how, root):
    g = T.Graph(opset)
    x = g.input("x", ["batch", 5, 16])
    model = g.model(T.layer_norm(g, x, [-1], eps=EPS, how=how, root=root))
    feed = {"x": T.normal(3, 5, 16)}
    result = fused_and_checked(model, feed, T.ref_layer_norm(feed["x"], [-1], EPS))
    assert T.ops(result.model) == {"LayerNormalization": 1}
    ln = T.node(result.model, "LayerNormalization")
    assert T.attrs(ln)["axis"] == -1 and T.attrs(ln)["epsilon"] == pytest.approx(EPS)
    assert result.counts["layer_norm"] == 1 and result.opset_after == max(opset, 17)


def test_eps_first_positive_axes_and_explicit_keepdims():
    g = T.Graph(16)
    x = g.input("x", [2, 3, 8])
    model = g.model(T.layer_norm(g, x, [2], eps=1e-3, eps_first=True, keepdims=1))
    feed = {"x": T.normal(2, 3, 8)}
    result = fused_and_checked(model, feed, T.ref_layer_norm(feed["x"], [2], 1e-3))
    assert T.ops(result.model) == {"LayerNormalization": 1}


@pytest.mark.parametrize("axes", [[-3, -2, -1], [1, 2, 3]])
def test_chw_layer_norm_with_chw_scale_and_bias(axes):
    g = T.Graph(16)
    x = g.input("x", ["batch", 4, 3, 5])
    scale, bias = T.normal(4, 3, 5, seed=1) + 1, T.normal(4, 3, 5, seed=2)
    y = T.layer_norm(g, x, axes, eps=EPS)
    model = g.model(g.op("Add", g.op("Mul", y, g.const(scale)), g.const(bias)))
    feed = {"x": T.normal(2, 4, 3, 5)}
    result = fused_and_checked(model, feed, T.ref_layer_norm(feed["x"], [1, 2, 3], EPS, scale, bias))
    assert T.ops(result.model) == {"LayerNormalization": 1}
    ln = T.node(result.model, "LayerNormalization")
    assert T.attrs(ln)["axis"] == -3
    np.testing.assert_array_equal(T.initializer(result.model, ln.input[1]), scale)
    np.testing.assert_array_equal(T.initializer(result.model, ln.input[2]), bias)


def own_mean_variance(g, x, axes=(-1,), var_axes=None, how="mul", eps=EPS):
    """torch's ``x.var(unbiased=False)`` in a legacy export: the variance centres x on a second mean."""
    d = g.op("Sub", x, g.reduce_mean(x, axes))
    var_axes = var_axes if var_axes is not None else axes
    centred = g.op("Sub", x, g.reduce_mean(x, var_axes))
    return T.divide_by_root(g, d, g.op("Add", g.reduce_mean(T.square(g, centred, how), var_axes), g.const(eps)))


def moments_variance(g, x, axes=(-1,), var_axes=None, how="mul", eps=EPS, mean_exponent=2.0):
    """ONNX's LayerNormalization function body: var = E[x^2] - E[x]^2."""
    mean = g.reduce_mean(x, axes)
    mean_sq = T.square(g, mean, how, exponent=mean_exponent)
    var = g.op("Sub", g.reduce_mean(T.square(g, x, how), var_axes if var_axes is not None else axes), mean_sq)
    return T.divide_by_root(g, g.op("Sub", x, mean), g.op("Add", var, g.const(eps)))


@pytest.mark.parametrize("opset", [14, 18])
@pytest.mark.parametrize("how", ["pow", "mul"])
@pytest.mark.parametrize("variance", [own_mean_variance, moments_variance])
def test_other_spellings_of_the_variance(opset, how, variance):
    g = T.Graph(opset)
    x = g.input("x", ["batch", 4, 16])
    model = g.model(variance(g, x, how=how))
    feed = {"x": T.normal(3, 4, 16)}
    result = fused_and_checked(model, feed, T.ref_layer_norm(feed["x"], [-1], EPS))
    assert T.ops(result.model) == {"LayerNormalization": 1}


def test_statistics_used_elsewhere_become_the_ln_outputs():
    """A mean that is also a graph output (ONNX's expanded function has Mean and InvStdDev outputs):
    the normalized value still becomes one LN node, and the mean is that node's Mean output
    (``ln_stats_outputs``)."""
    g = T.Graph(16)
    x = g.input("x", [2, 16])
    mean = g.reduce_mean(x, [-1])
    d = g.op("Sub", x, mean)
    y = T.divide_by_root(g, d, g.op("Add", g.reduce_mean(g.op("Mul", d, d), [-1]), g.const(EPS)))
    model = g.model(y, mean)
    feed = {"x": T.normal(2, 16)}
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1} and result.counts["ln_stats_outputs"] == 1
    after = T.run(result.model, feed)
    assert T.max_abs(after[y], T.ref_layer_norm(feed["x"], [-1], EPS)) <= 1e-5
    assert T.max_abs(after[mean], feed["x"].mean(-1, keepdims=True)) <= 1e-6


def near_miss_unbiased_sum(g, x):
    """var = ReduceSum(d^2) / (N - 1)  (torch.var's default)."""
    d = g.op("Sub", x, g.reduce_mean(x, [-1]))
    var = g.op("Div", g.op("ReduceSum", T.square(g, d), g.const([-1], np.int64)), g.const(15.0))
    return T.divide_by_root(g, d, g.op("Add", var, g.const(EPS)))


def near_miss_unbiased_rescaled(g, x):
    """var = ReduceMean(d^2) * N / (N - 1)."""
    d = g.op("Sub", x, g.reduce_mean(x, [-1]))
    var = g.op("Mul", g.reduce_mean(T.square(g, d), [-1]), g.const(16.0 / 15.0))
    return T.divide_by_root(g, d, g.op("Add", var, g.const(EPS)))


def near_miss_eps_after_sqrt(g, x):
    d = g.op("Sub", x, g.reduce_mean(x, [-1]))
    std = g.op("Sqrt", g.reduce_mean(T.square(g, d), [-1]))
    return g.op("Div", d, g.op("Add", std, g.const(EPS)))


def near_miss_exponent(g, x):
    """Pow(d, 2.001): close to a square, but not one."""
    d = g.op("Sub", x, g.reduce_mean(x, [-1]))
    var = g.reduce_mean(T.square(g, d, exponent=2.001), [-1])
    return T.divide_by_root(g, d, g.op("Add", var, g.const(EPS)))


def with_eps(make_eps):
    return lambda g, x: T.layer_norm(g, x, [-1], eps=make_eps(g, x))


NOT_CONSTANT = "epsilon is not a constant"
NEAR_MISSES = {  # name -> (build, reason the rule gives; where no pattern matches, the unmatched-centring note)
    "variance over N-1 (ReduceSum)": (near_miss_unbiased_sum, "divided by 15, not by 16"),
    "variance over N-1 (rescaled mean)": (near_miss_unbiased_rescaled, "no LayerNorm spelling the rules know"),
    "eps added after Sqrt": (near_miss_eps_after_sqrt, "no LayerNorm spelling the rules know"),
    "eps a graph input": (with_eps(lambda g, x: g.input("eps", [])), NOT_CONSTANT),
    "eps an overridable initializer": (with_eps(lambda g, x: g.input(g.const(EPS, name="eps_init"), [])),
                                       NOT_CONSTANT),
    "eps computed from the input": (with_eps(lambda g, x: g.op("ReduceMax", x, keepdims=0)), NOT_CONSTANT),
    "eps per feature": (with_eps(lambda g, x: g.const(np.full(16, EPS))), "not a scalar"),
    "mean over another axis than the variance": (
        lambda g, x: T.layer_norm(g, x, [-1], var_axes=[-2]), "the mean is over axes"),
    "exponent not exactly 2": (near_miss_exponent, "exactly 2.0"),
    "keepdims=0": (lambda g, x: T.layer_norm(g, x, [-1], keepdims=0), "keepdims=0"),
    "variance's own mean over another axis": (lambda g, x: own_mean_variance(g, x, var_axes=[-2]),
                                              "the mean is over axes"),
    "E[x^2] over another axis than E[x]": (lambda g, x: moments_variance(g, x, var_axes=[-2]),
                                           "the mean is over axes"),
    "E[x^2] - E[x]^2.001": (lambda g, x: moments_variance(g, x, how="pow", mean_exponent=2.001),
                            "exactly 2.0"),
}


@pytest.mark.parametrize("case", list(NEAR_MISSES))
def test_near_misses_stay_untouched(case):
    T.assert_near_miss_untouched(*NEAR_MISSES[case], opset=16)


def test_ir3_model_lists_its_initializers_as_inputs_and_still_fuses():
    """Before IR 4 every initializer had to be a graph input too; they are constants there (ONNX
    Runtime does not let them be overridden), so eps is constant and the LN fuses."""
    g = T.Graph(8)
    x = g.input("x", [2, 16])
    scale = T.normal(16, seed=12)
    # opset 8 -> IR 3; shape inference of opset-7 Pow cannot type the output, so it is declared
    model = g.model(g.op("Mul", T.layer_norm(g, x, [-1], eps=EPS), g.const(scale)), shape=[2, 16])
    assert model.ir_version == 3 and len(model.graph.input) == 1 + len(model.graph.initializer)
    feed = {"x": T.normal(2, 16)}
    result = fused_and_checked(model, feed, T.ref_layer_norm(feed["x"], [-1], EPS, scale))
    assert T.ops(result.model) == {"LayerNormalization": 1}
    assert [i.name for i in result.model.graph.input] == ["x"]


@pytest.mark.parametrize("branch", ["sub", "mean"])
def test_an_identity_on_one_branch_does_not_hide_the_layer_norm(branch):
    """ORT's layer_norm_weight_test_activation: Sub reads Identity(x), ReduceMean reads x (or the
    other way round). The Identity goes first, with a note, and the LN fuses."""
    g = T.Graph(17)
    x = g.input("x", [2, 4, 8])
    same = g.op("Identity", x)
    mean = g.reduce_mean(same if branch == "mean" else x, [-1])
    d = g.op("Sub", same if branch == "sub" else x, mean)
    y = T.divide_by_root(g, d, g.op("Add", g.reduce_mean(T.square(g, d), [-1]), g.const(EPS)))
    model = g.model(y)
    feed = {"x": T.normal(2, 4, 8)}
    result = fused_and_checked(model, feed, T.ref_layer_norm(feed["x"], [-1], EPS))
    assert T.ops(result.model) == {"LayerNormalization": 1}
    assert any("removed 1 Identity node(s)" in note for note in result.notes)
