"""The rms_norm rule: x / sqrt(mean(x^2) + eps) * w becomes one RMSNormalization where the opset
allows (>= 23), and is left, with the reason reported, where it does not."""

import numpy as np
import pytest

from lndeploy.pipeline import fuse
from lndeploy.passes.fuse import _testing as T

EPS = 1e-6


def llama_rms(opset, how="pow", root="reciprocal"):
    """LlamaRMSNorm: w * (x * rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))."""
    g = T.Graph(opset)
    x = g.input("x", ["batch", 7, 32])
    weight = T.normal(32, seed=5)
    y = g.op("Mul", g.const(weight), T.rms_norm(g, x, [-1], eps=EPS, how=how, root=root))
    return g.model(y), weight


@pytest.mark.parametrize("how, root", [("pow", "reciprocal"), ("mul", "rsqrt_pow"), ("pow", "div"),
                                       ("pow", "div_one")])
def test_rms_norm_fuses_at_opset_23(how, root):
    model, weight = llama_rms(23, how, root)
    result = fuse(model)
    assert T.ops(result.model) == {"RMSNormalization": 1}
    assert result.counts["rms_norm"] == 1 and result.counts["ln_scale"] == 1
    rms = T.node(result.model, "RMSNormalization")
    assert T.attrs(rms)["axis"] == -1 and T.attrs(rms)["epsilon"] == pytest.approx(EPS)
    np.testing.assert_array_equal(T.initializer(result.model, rms.input[1]), weight)
    feed = {"x": T.normal(2, 7, 32)}
    (name,) = before = T.run(model, feed)
    after = T.run(result.model, feed)[name]
    assert T.max_abs(after, before[name]) <= 1e-5
    assert T.max_abs(after, T.ref_rms_norm(feed["x"], [-1], EPS, weight)) <= 1e-5


def test_rms_norm_below_opset_23_is_left_and_reported():
    model, _ = llama_rms(18)
    result = fuse(model)
    assert result.model == model
    assert [u["rule"] for u in result.unconverted] == ["rms_norm"]
    assert "needs opset 23" in result.unconverted[0]["reason"]
    raised = fuse(model, opset=23)  # asked for: converted, then fused
    assert T.ops(raised.model) == {"RMSNormalization": 1} and raised.opset_after == 23
    # the notes give the real reasons: the model's own opset is 16 here, and 23 was asked for
    legacy, _ = llama_rms(16)
    left = fuse(legacy)
    assert left.unconverted[0]["reason"].startswith("RMSNormalization needs opset 23 (ask for --opset 23)")
    assert "converted from opset 16 to 23 (--opset 23)" in fuse(legacy, opset=23).notes


def test_rms_norm_with_eps_after_sqrt_stays():
    g = T.Graph(23)
    x = g.input("x", [4, 32])
    root = g.op("Sqrt", g.reduce_mean(T.square(g, x), [-1]))
    model = g.model(g.op("Div", x, g.op("Add", root, g.const(EPS))))
    result = fuse(model)
    assert result.model == model and not any(result.counts.values())
