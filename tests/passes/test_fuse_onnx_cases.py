"""``fuse`` on the ONNX standard's own LayerNormalization node tests: axes 0..3 and negative, 2-D to
4-D, eps 1e-1, Mean and InvStdDev outputs. Each result runs on ONNX Runtime and must reproduce the
stored expected outputs (not just the input model's), natively and as plugin nodes."""

import numpy as np
import pytest
from onnx import helper

from lndeploy.backends.onnxruntime import OrtSession
from lndeploy.passes.fuse import histogram
from lndeploy.pipeline import fuse
from tests.passes.onnx_node_cases import layer_norm_cases, rms_norm_cases

CASES = layer_norm_cases()
EXPANDED = sorted(n for n in CASES if "_expanded" in n)
NATIVE = sorted(n for n in CASES if "_expanded" not in n)
RMS_CASES = rms_norm_cases()
ATOL = 1e-5


def assert_reproduces(case, model) -> float:
    got = OrtSession(model).run(case.feed())
    errors = [float(np.max(np.abs(got[v.name].astype(np.float64) - want)))
              for v, want in zip(case.model.graph.output, case.outputs, strict=True)]
    assert max(errors) <= ATOL, (case.name, errors)
    return max(errors)


@pytest.mark.parametrize("name", EXPANDED or ["none"])
def test_expanded_function_becomes_one_layer_norm(name):
    """ONNX's function body (Flatten, Cast, E[x^2] - E[x]^2, Cast(eps), the Mean and InvStdDev outputs
    reshaped to X's rank): one LayerNormalization on X at the case's axis, whose optional outputs are
    the Mean and InvStdDev graph outputs; nothing else is left."""
    case = CASES[name]
    result = fuse(case.model)
    assert result.counts["layer_norm"] == 1 and result.counts["unflatten_layer_norm"] == 1
    assert result.counts["ln_stats_outputs"] == 2 and histogram(result.model) == {"LayerNormalization": 1}
    assert [o.name for o in result.model.graph.output] == ["Y", "Mean", "InvStdDev"]
    (ln,) = result.model.graph.node
    rank = len(case.model.graph.input[0].type.tensor_type.shape.dim)
    assert ln.input[0] == "X" and helper.get_node_attr_value(ln, "axis") == case_axis(case) - rank
    assert list(ln.output) == ["Y", "Mean", "InvStdDev"]
    assert_reproduces(case, result.model)


def case_axis(case) -> int:
    """The non-negative axis of the case's LayerNormalization, read from the function body's Flatten."""
    flatten = next(n for n in case.model.graph.node if n.op_type == "Flatten" and n.input[0] == "X")
    rank = len(case.model.graph.input[0].type.tensor_type.shape.dim)
    return helper.get_node_attr_value(flatten, "axis") % rank


@pytest.mark.parametrize("name", [n for n in EXPANDED if "ver18" in n] or ["none"])
def test_expanded_function_with_only_y_folds_scale_and_bias(name):
    case = CASES[name].only_y()
    result = fuse(case.model, to="plugin")
    assert histogram(result.model) == {"lndeploy.LndeployLayerNorm": 1}  # Scale and B taken unflattened
    assert_reproduces(case, result.model)


@pytest.mark.parametrize("name", NATIVE or ["none"])
def test_layer_norm_nodes_to_plugin(name):
    """With Mean/InvStdDev used the node stays and is reported; with only Y it becomes a plugin node
    (axis made negative) that runs on the CPU through its reference function."""
    case = CASES[name]
    kept = fuse(case.model, to="plugin")
    assert kept.counts["to_plugin"] == 0 and kept.unconverted[0]["reason"] == "its Mean/InvStdDev outputs are used"
    assert_reproduces(case, kept.model)
    y_only = case.only_y()
    result = fuse(y_only.model, to="plugin")
    assert histogram(result.model) == {"lndeploy.LndeployLayerNorm": 1} and not result.unconverted
    assert_reproduces(y_only, result.model)


@pytest.mark.parametrize("name", sorted(n for n in RMS_CASES if "_expanded" in n) or ["none"])
def test_expanded_rms_function_becomes_one_rms_norm(name):
    """ONNX's RMSNormalization function body (opset 23): ``XU = Cast(X)`` to the statistics type,
    axes ``Range(axis, Size(Shape(X)))`` (folded: X's rank is known), eps ``Cast(Constant)``, the
    root, ``Cast`` back, ``* W``: one RMSNormalization on X with scale W, nothing else."""
    case = RMS_CASES[name]
    result = fuse(case.model)
    assert histogram(result.model) == {"RMSNormalization": 1}, histogram(result.model)
    assert result.counts["rms_norm"] == 1 and result.counts["ln_scale"] == 1 and not result.unconverted
    (node,) = result.model.graph.node
    assert list(node.input) == ["X", "W"]
    assert_reproduces(case, result.model)
