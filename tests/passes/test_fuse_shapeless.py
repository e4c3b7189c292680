"""An LN taken directly on a graph input declared without any shape (issue #15, "shape-less I/O").

Its rank is unknown, so the rules work with negative axes: ``ReduceMean(x, [-1])`` is the trailing
axis at every rank, and ``LayerNormalization(axis=-1)`` with a scale of ones gathered from
``Shape(x)[-1:]`` is the same math at every rank. Axes counted from the front (or all axes) cannot
be shown to be trailing and are refused with that reason; a constant scale or bias cannot be shown
to have x's unknown dims (the shape-dependent degenerate case: a normalized dim of 1 broadcast
against a longer gain), so its Mul/Add stays, with a note. Each fused model is run at several ranks
against a float64 numpy LayerNorm.
"""

import numpy as np
import pytest
from onnx import TensorProto

from lndeploy import Session
from lndeploy.passes.fuse import _testing as T
from lndeploy.pipeline import fuse

GAMMA, BETA = np.linspace(0.5, 1.5, 16), np.linspace(-1, 1, 16)
ONES_PLUMBING = {"Shape": 1, "Gather": 1, "ConstantOfShape": 1}  # the scale of ones over x's last dims


def shapeless_ln(axes=(-1,), opset=18, **spelling):
    g = T.Graph(opset)
    x = g.input("x", None)
    return g, x, T.layer_norm(g, x, list(axes), **spelling)


def assert_layer_norm_at_ranks(model, output, axes, ranks=(1, 2, 3, 4), scale=None, bias=None) -> float:
    """The model's output against the float64 LN at each rank that has the normalized axes; the worst
    error relative to the largest reference value."""
    worst = 0.0
    for rank in (r for r in ranks if r >= len(axes)):
        x = T.normal(*([3] * (rank - 1) + [16]), seed=rank)
        want = T.ref_layer_norm(x, axes, 1e-5, scale, bias)
        error = T.max_abs(T.run(model, {"x": x})[output], want) / np.abs(want).max()
        assert error <= 1e-5, (rank, error)
        worst = max(worst, error)
    return worst


@pytest.mark.parametrize("spelling", [
    {}, {"how": "mul", "root": "reciprocal"}, {"eps_first": True, "root": "rsqrt_pow"}, {"root": "div_one"},
], ids=["pow-div", "mul-reciprocal", "eps-first-rsqrt", "div-one"])
def test_ln_on_a_shapeless_input_becomes_one_layer_norm(spelling):
    g, x, y = shapeless_ln(**spelling)
    model = T.shapeless_model(g, y)
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1, **ONES_PLUMBING}, T.ops(result.model)
    assert T.attrs(T.node(result.model, "LayerNormalization"))["axis"] == -1
    assert result.unconverted == []
    assert_layer_norm_at_ranks(result.model, y, [-1])


def test_two_trailing_negative_axes_and_an_old_opset():
    """Opset 13: ReduceMean's axes are an attribute; axes [-2, -1] become axis=-2."""
    g, x, y = shapeless_ln(axes=(-2, -1), opset=13)
    result = fuse(T.shapeless_model(g, y))
    assert T.ops(result.model) == {"LayerNormalization": 1, **ONES_PLUMBING}
    assert T.attrs(T.node(result.model, "LayerNormalization"))["axis"] == -2
    assert_layer_norm_at_ranks(result.model, y, [-2, -1], ranks=(2, 3, 4))


def test_keepdims_0_put_back_by_unsqueeze_at_negative_axes():
    g = T.Graph(18)
    x = g.input("x", None)

    def mean(t):
        return g.unsqueeze(g.reduce_mean(t, [-1], keepdims=0), [-1])

    d = g.op("Sub", x, mean(x))
    y = g.op("Div", d, g.op("Sqrt", g.op("Add", mean(g.op("Mul", d, d)), g.const(1e-5))))
    result = fuse(T.shapeless_model(g, y))
    assert T.ops(result.model) == {"LayerNormalization": 1, **ONES_PLUMBING}
    assert_layer_norm_at_ranks(result.model, y, [-1])


def test_a_constant_gain_and_bias_stay_with_a_note_and_the_output_is_unchanged():
    g, x, y = shapeless_ln()
    z = g.op("Add", g.op("Mul", y, g.const(GAMMA)), g.const(BETA))
    result = fuse(T.shapeless_model(g, z))
    assert T.ops(result.model) == {"LayerNormalization": 1, "Mul": 1, "Add": 1, **ONES_PLUMBING}
    assert [left["rule"] for left in result.unconverted] == ["ln_scale"]
    assert "the input has no shape" in result.unconverted[0]["reason"]
    assert_layer_norm_at_ranks(result.model, z, [-1], scale=GAMMA, bias=BETA)


def test_rms_norm_on_a_shapeless_input_at_opset_23():
    g = T.Graph(23)
    x = g.input("x", None)
    y = T.rms_norm(g, x, [-1])
    result = fuse(T.shapeless_model(g, y))
    assert T.ops(result.model) == {"RMSNormalization": 1, **ONES_PLUMBING}
    for rank in (1, 2, 3):
        feed = T.normal(*([2] * (rank - 1) + [16]), seed=rank)
        assert T.max_abs(T.run(result.model, {"x": feed})[y], T.ref_rms_norm(feed, [-1], 1e-6)) <= 1e-5


@pytest.mark.parametrize("axes, opset, reason", [
    ([1], 18, "count from the front"),
    ([-2, 1], 18, "count from the front"),
    ([], 18, "reduces all of its axes"),
    ([-2], 18, "the input's rank is unknown"),  # not trailing: the channel-first rewrite needs a perm
])
def test_axes_that_need_the_rank_are_refused_with_a_reason(axes, opset, reason):
    g, x, y = shapeless_ln(axes=axes, opset=opset)
    model = T.shapeless_model(g, y)
    result = fuse(model)
    assert result.model == model and not any(result.counts.values())
    assert len(result.unconverted) == 1 and reason in result.unconverted[0]["reason"], result.unconverted


def test_a_sum_over_unknown_dims_is_refused_with_a_reason():
    """ReduceSum / N needs N, the product of the reduced dims: unknown without a shape."""
    g = T.Graph(18)
    x = g.input("x", None)

    def mean(t):
        return g.op("Div", g.reduce("ReduceSum", t, [-1], keepdims=1), g.const(16.0))

    d = g.op("Sub", x, mean(x))
    y = g.op("Div", d, g.op("Sqrt", g.op("Add", mean(g.op("Mul", d, d)), g.const(1e-5))))
    model = T.shapeless_model(g, y)
    result = fuse(model)
    assert result.model == model
    assert len(result.unconverted) == 1 and "not static" in result.unconverted[0]["reason"]


@pytest.mark.parametrize("backend", ["onnxruntime", "onnx-reference"])
def test_session_runs_a_shapeless_input_at_any_rank(backend):
    """ONNX Runtime reports [] for a shape-less input and a scalar alike; the session reads the model,
    so a rank-2 or rank-4 feed is not refused as 'the model expects shape ()'."""
    g, x, y = shapeless_ln()
    session = Session(T.shapeless_model(g, y), backend=backend)
    assert session.inputs[0].shape is None
    for shape in ((5, 16), (2, 3, 4, 16)):
        feed = T.normal(*shape)
        assert T.max_abs(session.run({"x": feed})[y], T.ref_layer_norm(feed, [-1], 1e-5)) <= 1e-5


def test_cli_fuse_and_inspect_say_what_happened(tmp_path, run_cli):
    g, x, y = shapeless_ln()
    z = g.op("Mul", y, g.const(GAMMA))
    path = tmp_path / "shapeless.onnx"
    path.write_bytes(T.shapeless_model(g, z).SerializeToString())
    shown = run_cli("inspect", path)
    assert shown.code == 0 and "input x: fp32 any shape (none declared)" in shown.out, shown.out
    fused = run_cli("fuse", path, "-o", tmp_path / "fused.onnx")
    assert fused.code == 0, fused.out + fused.err
    assert "normalization nodes: 0 -> 1" in fused.out
    assert "left unconverted" in fused.out and "declare the input's shape" in fused.out, fused.out
    written = run_cli("inspect", tmp_path / "fused.onnx")  # still shape-less, and readable
    assert written.code == 0 and "input x: fp32 any shape (none declared)" in written.out, written.out
    plugin = run_cli("fuse", path, "-o", tmp_path / "plugin.onnx", "--to", "plugin")
    assert plugin.code == 0 and "normalization nodes: 0 -> 1" in plugin.out, plugin.out + plugin.err
    # TensorRT cannot take an input of unknown rank: said before its parser asserts deep inside
    built = run_cli("build", tmp_path / "fused.onnx", "-o", tmp_path / "fused.engine")
    assert built.code == 2 and "declared without a shape" in built.err and len(built.err.splitlines()) == 1
    assert not (tmp_path / "fused.engine").exists()
    packaged = run_cli("package", tmp_path / "fused.onnx", "--triton-repo", tmp_path / "repo")
    assert packaged.code == 2 and "has no shape in the graph" in packaged.err, packaged.err
    assert not (tmp_path / "repo" / "fused").exists()


def test_inputs_cannot_be_generated_for_a_shapeless_input():
    from lndeploy.errors import BadInputError
    from lndeploy.inputs import specs_from_onnx

    g, x, y = shapeless_ln()
    with pytest.raises(BadInputError, match="'x' is declared without a shape"):
        specs_from_onnx(T.shapeless_model(g, y))


def test_a_typed_scalar_input_is_still_a_scalar():
    """A declared shape [] is a scalar: a rank-1 feed is refused before the runtime sees it."""
    from lndeploy.errors import BadInputError

    g = T.Graph(18)
    x = g.input("x", [], TensorProto.FLOAT)
    session = Session(T.shapeless_model(g, g.op("Relu", x)))
    assert session.inputs[0].shape == ()
    with pytest.raises(BadInputError, match="has rank 1"):
        session.run({"x": np.zeros(3, np.float32)})
