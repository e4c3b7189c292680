"""A fused legacy export passes lndeploy's parity check against its PyTorch model (SPEC section 4)."""

import pytest

from lndeploy.checker import check
from lndeploy.pipeline import fuse
from tests.conftest import zoo_model
from tests.passes.conftest import CONVNEXT


@pytest.mark.parametrize("model_file", [zoo_model("transformer"), CONVNEXT], ids=["transformer", "convnext"])
def test_fused_opset16_export_passes_check(legacy, tmp_path, model_file):
    path, _ = legacy(model_file, 16)
    fused = tmp_path / "fused.onnx"
    assert fuse(path, fused).ln_nodes >= 1
    result = check(model_file, onnx=str(fused))
    assert result.passed, result.summary()
    assert result.provider == "CPUExecutionProvider"
    assert max(stats["max_abs"] for stats in result.outputs.values()) <= 1e-4
