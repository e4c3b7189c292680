"""`check --onnx` on files from another exporter (torch's legacy one): inputs named `input.1`, dims
fixed, names given in another order. Paired by position where every name differs, checked at the
artifact's fixed sizes, and a real mismatch is one line of bad input, never an internal error."""

import json
import textwrap
import warnings

import pytest
import torch

from tests.conftest import zoo_model

MODEL = textwrap.dedent("""
    import torch
    from torch import nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln = nn.LayerNorm(16)
            self.proj = nn.Linear(8, 16)

        def forward(self, x, y):
            return self.ln(2 * x + self.proj(y))

    def build():
        torch.manual_seed(0)
        return Model()

    def example_inputs():
        return {"y": torch.randn(2, 8), "x": torch.randn(2, 16)}
    """)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "two_inputs.py"
    path.write_text(MODEL)
    return path


def legacy_export(model_file, path, **names):
    from lndeploy import modelfile

    spec = modelfile.load(str(model_file))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation warning
        torch.onnx.export(spec.module, (spec.inputs["x"], spec.inputs["y"]), str(path), dynamo=False,
                          opset_version=17, **names)
    return path


def test_legacy_export_with_generated_names_and_fixed_batch_is_checked(run_cli, model_file, tmp_path):
    onnx_path = legacy_export(model_file, tmp_path / "legacy.onnx")
    report = tmp_path / "r.json"
    result = run_cli("check", model_file, "--onnx", onnx_path, "--report", report)
    assert result.code == 0, result.err
    data = json.loads(report.read_text())
    assert data["passed"] and data["outputs"] and all(o["max_abs"] <= 1e-5 for o in data["outputs"].values())
    assert [s["shapes"] for s in data["samples"]] == [{"y": [2, 8], "x": [2, 16]}]
    assert any("paired by position" in n for n in data["notes"])
    assert any("fixes dim 'batch' to 2" in n for n in data["notes"])


def test_legacy_export_with_names_in_the_wrong_order_is_bad_input(run_cli, model_file, tmp_path):
    onnx_path = legacy_export(model_file, tmp_path / "swapped.onnx", input_names=["y", "x"])
    result = run_cli("check", model_file, "--onnx", onnx_path)
    assert result.code == 2, result.err
    assert result.err.strip().count("\n") == 0
    assert "artifact input 'y' has dim 1 = 16, the model's example has 8" in result.err


@pytest.mark.parametrize("backend", ["onnxruntime", "onnx-reference"])
def test_an_artifact_declared_without_shapes_is_checked_at_the_model_s_ranks(run_cli, zoo_export, tmp_path, backend):
    """Inputs and outputs without a shape field (any rank; ORT runs such files): the feeds take the
    model's example ranks. Was an internal error (Polygraphy's coercion got no shape)."""
    import onnx

    model = onnx.load(zoo_export("transformer").path)
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.ClearField("shape")
    path = tmp_path / "shapeless.onnx"
    onnx.save(model, str(path))
    report = tmp_path / "report.json"
    result = run_cli("check", zoo_model("transformer"), "--onnx", path, "--backend", backend, "--report", report)
    assert result.code == 0, result.err
    outputs = json.loads(report.read_text())["outputs"]
    assert outputs and all(o["max_abs"] <= 1e-4 for o in outputs.values()), outputs
