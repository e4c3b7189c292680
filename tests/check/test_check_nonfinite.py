"""NaN/inf in PyTorch's own output (a generated mask that pads a whole row) is parity when the artifact
has the same value there; a NaN on one side only fails with a line that says so."""

import math

import torch

from lndeploy.checker import check
from lndeploy.pipeline import export


class LogOfNorm(torch.nn.Module):
    """log of a LayerNorm output: NaN wherever the normalised value is negative, in PyTorch and ORT."""

    def __init__(self, log: bool = True):
        super().__init__()
        self.ln, self.log = torch.nn.LayerNorm(8), log

    def forward(self, x):
        y = self.ln(x)
        return torch.log(y) if self.log else y


def test_nan_where_pytorch_has_nan_too_passes_with_a_note():
    torch.manual_seed(0)
    result = check(LogOfNorm().eval(), example_inputs=(torch.randn(2, 8),))
    stats = result.outputs["output"]
    # before: FAILED while reporting max abs 1e-7 against atol 1e-4
    assert result.passed, result.summary()
    assert 0 <= stats["max_abs"] < 1e-5 and not math.isnan(stats["mean_abs"])
    assert any("NaN/inf in PyTorch itself" in note for note in result.notes)


def test_nan_from_the_artifact_only_fails_and_says_nan(tmp_path):
    torch.manual_seed(0)
    with_log = LogOfNorm().eval()
    export(with_log, str(tmp_path / "log.onnx"), example_inputs=(torch.randn(2, 8),))
    without_log = LogOfNorm(log=False).eval()
    without_log.load_state_dict(with_log.state_dict())
    result = check(without_log, onnx=str(tmp_path / "log.onnx"), example_inputs=(torch.randn(2, 8),))
    assert not result.passed
    assert "NaN/inf elements from the artifact" in result.summary()
