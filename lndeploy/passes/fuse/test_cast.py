"""The no_op_cast rule: a Cast to the type the normalization already has goes, so the scale and bias
behind it fold, and so does a Cast into it that keeps x's type; a Cast that converts (fp32
statistics -> fp16, fp16 x -> fp32) stays."""

import numpy as np
import pytest
from onnx import TensorProto

from lndeploy.pipeline import fuse
from lndeploy.passes.fuse import _testing as T

EPS = 1e-5


def test_same_type_cast_between_ln_and_its_affine_goes():
    g = T.Graph(17)
    x = g.input("x", ["batch", 16])
    scale, bias = T.normal(16, seed=1), T.normal(16, seed=2)
    y = g.op("Cast", T.layer_norm(g, x, [-1], eps=EPS), to=TensorProto.FLOAT)
    model = g.model(g.op("Add", g.op("Mul", y, g.const(scale)), g.const(bias)))
    feed = {"x": T.normal(3, 16)}
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1}
    assert result.counts["no_op_cast"] == 1 and result.counts["ln_scale"] == result.counts["ln_bias"] == 1
    got = T.run(result.model, feed)[result.model.graph.output[0].name]
    assert T.max_abs(got, T.ref_layer_norm(feed["x"], [-1], EPS, scale, bias)) <= 1e-5


def test_cast_that_converts_stays():
    g = T.Graph(17)
    x = g.input("x", ["batch", 16])
    half = g.op("Cast", T.layer_norm(g, x, [-1], eps=EPS), to=TensorProto.FLOAT16)
    y = g.op("Cast", half, to=TensorProto.FLOAT)  # a float output, as the test graph builder wants
    model = g.model(y)
    feed = {"x": T.normal(3, 16)}
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1, "Cast": 2} and result.counts["no_op_cast"] == 0
    got = T.run(result.model, feed)[y]
    assert T.max_abs(got, T.ref_layer_norm(feed["x"], [-1], EPS).astype(np.float16)) <= 4e-3
    assert T.max_abs(got, got.astype(np.float16)) == 0  # went through fp16


def test_same_type_cast_into_the_node_goes():
    """ONNX's RMSNormalization function body casts X to the statistics type first: for an X of that
    type it is the identity."""
    g = T.Graph(17)
    x = g.input("x", ["batch", 16])
    model = g.model(T.layer_norm(g, g.op("Cast", x, to=TensorProto.FLOAT), [-1], eps=EPS))
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1} and result.counts["no_op_cast"] == 1
    feed = {"x": T.normal(3, 16)}
    got = T.run(result.model, feed)[result.model.graph.output[0].name]
    assert T.max_abs(got, T.ref_layer_norm(feed["x"], [-1], EPS)) <= 1e-5


def widened_and_back(x_type, wide_type, scale=None):
    """``LN(Cast(x, to=wide))`` cast back to x's type: ``F.layer_norm(x.float()).to(x.dtype)``; with
    ``scale``, an existing LayerNormalization node with that scale (as ORT's optimizer writes one)."""
    g = T.Graph(17)
    x = g.input("x", ["batch", 16], x_type)
    wide = g.op("Cast", x, to=wide_type)
    dtype = np.float64 if wide_type == TensorProto.DOUBLE else np.float32
    if scale is None:
        y = T.layer_norm(g, wide, [-1], eps=g.const(EPS, dtype))
        return g.model(g.op("Cast", y, to=x_type), dtype=x_type)
    y = g.op("LayerNormalization", wide, g.const(scale, dtype), axis=-1, epsilon=EPS)
    # and a primitive-op LN beside it, so that the rules run at all (they start from a reduction)
    other = g.op("Cast", T.layer_norm(g, g.op("Cast", x, to=TensorProto.FLOAT), [-1], eps=EPS), to=x_type)
    return g.model(g.op("Cast", y, to=x_type), other, dtype=x_type)


def test_fp16_widened_to_float_and_cast_back_is_one_fp16_node():
    """stash_type=1 is defined as exactly this: compute in float, cast the result back."""
    result = fuse(widened_and_back(TensorProto.FLOAT16, TensorProto.FLOAT))
    assert T.ops(result.model) == {"LayerNormalization": 1} and not result.unconverted
    (ln,) = result.model.graph.node
    assert T.attrs(ln)["stash_type"] == 1 and result.model.graph.input[0].name == ln.input[0]
    x = T.normal(3, 16).astype(np.float16)
    got = T.run(result.model, {"x": x})[result.model.graph.output[0].name]
    assert got.dtype == np.float16
    assert T.max_abs(got, T.ref_layer_norm(x, [-1], EPS)) <= 4e-3  # one fp16 rounding of values near 1


@pytest.mark.parametrize("wide, scale, reason", [
    (TensorProto.DOUBLE, None, "the node computes in DOUBLE"),
    (TensorProto.FLOAT, np.linspace(0.5, 1.5, 16), "applied in float before the Cast"),
])
def test_what_the_float_round_trip_cannot_take_stays_with_a_note(wide, scale, reason):
    model = widened_and_back(TensorProto.FLOAT16, wide, scale)
    result = fuse(model)
    assert T.ops(result.model)["Cast"] == 2
    assert any(reason in left["reason"] for left in result.unconverted), result.unconverted


def test_a_float_scale_folded_before_the_cast_back_is_noted():
    """``x.float()`` normalized, ``* gamma`` in float, cast back: ln_scale folds gamma into the float
    node after the cast rule ran; the next round of the rules sees the round trip and says why it stays."""
    g = T.Graph(17)
    x = g.input("x", ["batch", 16], TensorProto.FLOAT16)
    y = g.op("Mul", T.layer_norm(g, g.op("Cast", x, to=TensorProto.FLOAT), [-1], eps=EPS),
             g.const(np.linspace(0.5, 1.5, 16)))
    result = fuse(g.model(g.op("Cast", y, to=TensorProto.FLOAT16), dtype=TensorProto.FLOAT16))
    assert T.ops(result.model) == {"Cast": 2, "LayerNormalization": 1} and result.counts["ln_scale"] == 1
    assert any("applied in float before the Cast" in left["reason"] for left in result.unconverted)


def test_a_scale_after_a_cast_to_another_type_stays_with_a_note():
    """ORT's layer_norm_with_cast_3: a float LN, Cast to fp16, then gamma and beta in fp16."""
    g = T.Graph(17)
    x = g.input("x", ["batch", 16])
    half = g.op("Cast", T.layer_norm(g, x, [-1], eps=EPS), to=TensorProto.FLOAT16)
    y = g.op("Add", g.op("Mul", half, g.const(np.linspace(0.5, 1.5, 16), np.float16)), g.const(np.zeros(16), np.float16))
    result = fuse(g.model(y, dtype=TensorProto.FLOAT16))
    assert T.ops(result.model) == {"LayerNormalization": 1, "Cast": 1, "Mul": 1, "Add": 1}
    (left,) = result.unconverted
    assert left["rule"] == "no_op_cast" and "applied in FLOAT, before the Cast" in left["reason"]
