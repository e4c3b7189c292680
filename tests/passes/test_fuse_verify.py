"""fuse's verification: both models run the same way (what ``open_session`` opens), a gate relative
to the output's magnitude, a constant row and a zero row fed too, and the tolerance used printed."""

import numpy as np
import onnx
import pytest
from onnx import helper

from lndeploy.errors import ParityError
from lndeploy.passes.fuse import _testing as T
from lndeploy.passes.fuse import _verify
from lndeploy.pipeline import fuse, rewrite_verification_opener
from lndeploy.passes.fuse.report import format_report


def ln_around_500(width=64):
    """A correct rewrite whose outputs are near 500: fp32 rounding alone moves them by ~6e-5."""
    g = T.Graph(18)
    x = g.input("x", ["batch", width])
    y = T.layer_norm(g, x, [-1])
    return g.model(g.op("Add", g.op("Mul", y, g.const(np.full(width, 100.0))), g.const(np.full(width, 500.0))))


def test_outputs_around_500_are_accepted_and_the_tolerance_is_printed():
    result = fuse(ln_around_500())
    assert T.ops(result.model) == {"LayerNormalization": 1}
    samples = result.verification["samples"]
    assert len(samples) == 3 and samples[-1]["sizes"]["rows"] == "constant, zero"
    worst = max(max(s["max_abs"].values()) for s in samples)
    assert 1e-5 < worst < 5e-4  # beyond the old absolute 1e-5 gate, within 1e-5 relative of ~500
    assert result.verification["tolerance"] == {"float32": {"atol": 1e-5, "rtol": 1e-5}}
    lines = [line for line in format_report(result) if line.startswith("verified")]
    assert len(lines) == 3 and all("(tolerance float32 abs 1e-05 or rel 1e-05)" in line for line in lines)


def test_a_real_relative_change_is_refused():
    """The bias moved by 1e-3 relative (0.5 at 500): beyond the gate, ParityError, nothing written."""
    before = ln_around_500()
    after = onnx.ModelProto()
    after.CopyFrom(before)
    bias = next(i for i in after.graph.initializer if np.all(onnx.numpy_helper.to_array(i) == 500.0))
    bias.CopyFrom(onnx.numpy_helper.from_array(np.full(64, 500.5, np.float32), bias.name))
    with pytest.raises(ParityError, match="beyond abs 1e-05 or rel 1e-05"):
        _verify.compare(before, after, rewrite_verification_opener())


def test_a_vanished_epsilon_shows_at_the_zero_row():
    """LN with epsilon 0 in place of 1e-6 agrees on random rows (variance ~1: relative change ~5e-7)
    but gives 0/0 = NaN on a zero row, where the original gives 0."""
    g = T.Graph(18)
    x = g.input("x", ["batch", 16])
    before = g.model(T.layer_norm(g, x, [-1], eps=1e-6))
    graph = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "s"], [before.graph.output[0].name], axis=-1, epsilon=0.0)],
        "g", list(before.graph.input), list(before.graph.output),
        [onnx.numpy_helper.from_array(np.ones(16, np.float32), "s")])
    after = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=before.ir_version)
    with pytest.raises(ParityError, match="rows=constant, zero"):
        _verify.compare(before, after, rewrite_verification_opener())


class Recording:
    """An opener that records what it opened and closes what it opened (ORT, all optimisations on)."""

    def __init__(self):
        self.opened, self.closed = [], 0

    def __call__(self, model):
        from lndeploy.backends.onnxruntime import OrtSession

        self.opened.append(model)
        session = OrtSession(model, providers=["CPUExecutionProvider"])
        session.close = self.close
        return session

    def close(self):
        self.closed += 1


def test_both_models_run_through_the_opener_passed_in():
    """Like with like: whatever opens one side opens the other (here ORT with its optimizer on for
    both, where it fuses the input's LN itself), and each session is closed."""
    opener = Recording()
    model = ln_around_500()
    result = fuse(model, open_session=opener)
    assert len(opener.opened) == 2 and opener.closed == 2
    assert opener.opened[1] == model and opener.opened[0] == result.model
    assert result.verification["provider"] == "CPUExecutionProvider"


def test_shape_less_graph_input_is_verified_at_a_guessed_rank():
    g = T.Graph(18)
    x = g.input("x", None)
    y = T.layer_norm(g, g.op("Reshape", x, g.const([-1, 16], np.int64)), [-1])
    model = T.shapeless_model(g, y)
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1, "Reshape": 1}
    assert set(result.verification["samples"][0]["sizes"]) == {"x_dim0", "x_dim1", "x_dim2"}  # rank 3 first
