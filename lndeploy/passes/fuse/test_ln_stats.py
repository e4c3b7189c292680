"""The ln_stats_outputs rule: a mean and an inverse std of the LN's input still computed beside it
(graph outputs, as in ONNX's expanded function and in training graphs) become the LN's own Mean and
InvStdDev outputs where they are exactly those; anything else stays computed as it was."""

import numpy as np
from onnx import TensorProto

from lndeploy.passes.fuse import _testing as T
from lndeploy.pipeline import fuse

EPS = 1e-5


def ln_with_stats(stats_eps=EPS, stats_axes=(-1,), inverse="reciprocal"):
    """The trailing LN of x [2, 3, 16]; its mean and 1/sqrt(var + stats_eps) over ``stats_axes`` also out."""
    g = T.Graph(18)
    x = g.input("x", [2, 3, 16])
    mean = g.reduce_mean(x, [-1])
    d = g.op("Sub", x, mean)
    var = g.reduce_mean(g.op("Mul", d, d), [-1])
    root = g.op("Sqrt", g.op("Add", var, g.const(EPS)))
    y = g.op("Div", d, root)
    if tuple(stats_axes) == (-1,) and stats_eps == EPS:
        out_mean, plus = mean, g.op("Add", var, g.const(stats_eps))
    else:  # statistics of their own, over other axes or with another eps
        out_mean = g.reduce_mean(x, stats_axes)
        d2 = g.op("Sub", x, out_mean)
        plus = g.op("Add", g.reduce_mean(g.op("Mul", d2, d2), stats_axes), g.const(stats_eps))
    inv = g.op("Reciprocal", g.op("Sqrt", plus)) if inverse == "reciprocal" else g.op("Pow", plus, g.const(-0.5))
    return g.model(y, out_mean, inv)


def test_mean_and_inverse_std_outputs_become_the_ln_outputs():
    model = ln_with_stats()
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1} and result.counts["ln_stats_outputs"] == 2
    ln = T.node(result.model, "LayerNormalization")
    assert list(ln.output) == [o.name for o in model.graph.output]
    x = T.normal(2, 3, 16)
    got = T.run(result.model, {"x": x})
    x64 = x.astype(np.float64)
    mean = x64.mean(-1, keepdims=True)
    inv = 1 / np.sqrt(((x64 - mean) ** 2).mean(-1, keepdims=True) + EPS)
    y, m, i = (got[o.name] for o in model.graph.output)
    assert T.max_abs(y, T.ref_layer_norm(x, [-1], EPS)) <= 1e-5
    assert T.max_abs(m, mean) <= 1e-6 and T.max_abs(i, inv) <= 1e-5 * inv.max()
    assert m.dtype == i.dtype == np.float32 and m.shape == i.shape == (2, 3, 1)


def test_pow_minus_half_spelling_of_the_inverse_std():
    result = fuse(ln_with_stats(inverse="pow"))
    assert T.ops(result.model) == {"LayerNormalization": 1}


def test_statistics_with_another_eps_or_axes_stay():
    """With another eps the mean is still LN's (it is mapped), the inverse std is not; over other axes
    neither is. The optional outputs the attempt added are dropped again where nothing uses them."""
    for model, mapped in ((ln_with_stats(stats_eps=1e-3), 1), (ln_with_stats(stats_axes=(-2, -1)), 0)):
        result = fuse(model)
        assert result.counts["layer_norm"] == 1 and result.counts["ln_stats_outputs"] == mapped
        ln = T.node(result.model, "LayerNormalization")
        assert len(ln.output) == 1 + mapped
        assert T.ops(result.model)["Reciprocal"] == 1


def test_statistics_of_an_fp16_ln_stay():
    """LN's Mean/InvStdDev are float32 (stash_type=1): the fp16 mean of an fp16 LN is not its Mean."""
    g = T.Graph(18)
    x = g.input("x", [4, 16], TensorProto.FLOAT16)
    mean = g.reduce_mean(x, [-1])
    d = g.op("Sub", x, mean)
    var = g.reduce_mean(g.op("Mul", d, d), [-1])
    y = g.op("Div", d, g.op("Sqrt", g.op("Add", var, g.const(EPS, np.float16))))
    model = g.model(y, mean, dtype=TensorProto.FLOAT16)
    result = fuse(model)
    assert result.counts["layer_norm"] == 1 and result.counts["ln_stats_outputs"] == 0
    assert T.ops(result.model)["ReduceMean"] == 1
