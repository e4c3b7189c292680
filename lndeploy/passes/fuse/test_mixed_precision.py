"""The mixed-precision LayerNorm spelling (layer_norm rule, cast variant; no_op_cast's widening round
trip): ``x - mean`` in x's type, its statistics after a Cast to a wider type, cast back, then the
affine part. It becomes one LayerNormalization (the statistics in fp32, stash_type=1), not an RMS
norm of ``Cast(d)``; a Cast that narrows is refused with a reason."""

import numpy as np
import pytest
from onnx import TensorProto

from lndeploy.passes.fuse import _testing as T
from lndeploy.pipeline import fuse

EPS = 1e-5
NP = {TensorProto.FLOAT16: np.float16, TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64}


def mixed_layer_norm(x_type, wide_type, *, eps_first=False, identity=False, axes_input=False, width=16):
    """``Cast(d, wide) / sqrt(mean(Cast(d, wide)^2) + eps)``, cast back, ``* gamma + beta``."""
    g = T.Graph(18)
    x = g.input("x", ["batch", width], x_type)
    axes = g.input("axes", [1], TensorProto.INT64) if axes_input else None
    mean = g.op("ReduceMean", x, axes) if axes_input else g.reduce_mean(x, [-1])
    wide = g.op("Cast", g.op("Sub", x, mean), to=wide_type)
    var = g.op("ReduceMean", g.op("Pow", wide, g.const(2.0, NP[wide_type])), axes) if axes_input else \
        g.reduce_mean(g.op("Pow", wide, g.const(2.0, NP[wide_type])), [-1])
    eps = g.const(EPS, NP[wide_type])
    plus = g.op("Add", eps, var) if eps_first else g.op("Add", var, eps)
    y = g.op("Cast", g.op("Div", wide, g.op("Sqrt", plus)), to=x_type)
    gamma = g.const(np.linspace(0.5, 1.5, width), NP[x_type])
    beta = g.const(np.linspace(-1, 1, width), NP[x_type])
    if identity:
        gamma, beta = g.op("Identity", gamma), g.op("Identity", beta)
    return g.model(g.op("Add", g.op("Mul", y, gamma), beta), shape=["batch", width], dtype=x_type), gamma, beta


def reference(x, width=16):
    return T.ref_layer_norm(x, [-1], EPS, np.linspace(0.5, 1.5, width), np.linspace(-1, 1, width))


@pytest.mark.parametrize("variant", [{}, {"eps_first": True}, {"identity": True}])
def test_fp32_input_with_double_statistics_becomes_one_layer_norm(variant):
    """Opset 18: the ReduceMean axes are an input (a constant one) in every variant."""
    model, _, _ = mixed_layer_norm(TensorProto.FLOAT, TensorProto.DOUBLE, **variant)
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1}, T.ops(result.model)
    assert result.counts["no_op_cast"] == 1 and result.counts["ln_scale"] == result.counts["ln_bias"] == 1
    x = T.normal(4, 16)
    want = reference(x)
    got = T.run(result.model, {"x": x})[model.graph.output[0].name]
    assert T.max_abs(got, want) <= 1e-5 * np.abs(want).max()  # within 1e-5 relative


def test_fp16_input_with_fp32_statistics_becomes_one_layer_norm():
    """What ONNX Runtime's optimizer fuses too; the fused LN computes d in fp32, the original in fp16."""
    model, _, _ = mixed_layer_norm(TensorProto.FLOAT16, TensorProto.FLOAT)
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1}
    x = T.normal(4, 16).astype(np.float16)
    got = T.run(result.model, {"x": x})[model.graph.output[0].name]
    assert T.max_abs(got, reference(x)) <= 1e-2  # the fp16 contract; fp16 output rounding ~1e-3


def test_axes_as_a_graph_input_is_refused_with_a_reason():
    """Axes the caller feeds are not known when rewriting: a note says so (not an RMS norm)."""
    model, _, _ = mixed_layer_norm(TensorProto.FLOAT, TensorProto.DOUBLE, axes_input=True)
    result = fuse(model)
    assert result.model == model
    (note,) = result.unconverted
    assert note["rule"] == "layer_norm" and "axes are not constant" in note["reason"]


def test_narrowing_cast_is_refused_with_a_reason():
    g = T.Graph(18)
    x = g.input("x", [4, 16], TensorProto.DOUBLE)
    narrow = g.op("Cast", g.op("Sub", x, g.reduce_mean(x, [-1])), to=TensorProto.FLOAT)
    var = g.reduce_mean(g.op("Mul", narrow, narrow), [-1])
    model = g.model(g.op("Div", narrow, g.op("Sqrt", g.op("Add", var, g.const(EPS)))))
    result = fuse(model)
    assert result.model == model
    (note,) = result.unconverted
    assert note["rule"] == "layer_norm" and "does not widen" in note["reason"]
