"""The no_op_cast rule: a Cast to the type the normalization already has goes, so the scale and bias
behind it fold, and so does a Cast into it that keeps x's type; a Cast that converts (fp32
statistics -> fp16, fp16 x -> fp32) stays."""

import numpy as np
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


def test_same_type_cast_into_the_node_goes_and_a_converting_one_stays():
    """ONNX's RMSNormalization function body casts X to the statistics type first: for an X of that
    type it is the identity. From fp16 it converts, and stays."""
    for x_type, kept in ((TensorProto.FLOAT, {}), (TensorProto.FLOAT16, {"Cast": 2})):
        g = T.Graph(17)
        x = g.input("x", ["batch", 16], x_type)
        y = T.layer_norm(g, g.op("Cast", x, to=TensorProto.FLOAT), [-1], eps=EPS)
        model = g.model(g.op("Cast", y, to=x_type), dtype=x_type)
        result = fuse(model)
        assert T.ops(result.model) == {"LayerNormalization": 1, **kept}, T.ops(result.model)
        feed = {"x": T.normal(3, 16).astype(np.float32 if x_type == TensorProto.FLOAT else np.float16)}
        got = T.run(result.model, feed)[result.model.graph.output[0].name]
        assert T.max_abs(got, T.ref_layer_norm(feed["x"], [-1], EPS)) <= (1e-5 if not kept else 4e-3)
