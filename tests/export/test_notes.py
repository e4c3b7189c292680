"""A model without LayerNorm (RMS norm, T5-style) exports and checks, and says so: the user asked a
LayerNorm tool for LN nodes or plugin nodes and gets none."""

import torch
from torch import nn

from lndeploy.checker import check
from lndeploy.pipeline import export


class RMSNormModel(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(16, 16)
        self.weight = nn.Parameter(torch.rand(16) + 0.5)

    def forward(self, x):
        h = self.proj(x)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)


def test_export_and_check_say_there_is_no_layer_norm(tmp_path):
    x = torch.randn(2, 16)
    result = export(RMSNormModel(), tmp_path / "rms.onnx", ln="plugin", example_inputs=(x,))
    errors = [err for run in result.verification for err in run.max_abs.values()]
    assert errors and all(err < 1e-5 for err in errors), errors
    assert any("no LayerNormalization node" in n and "lndeploy fuse" in n for n in result.notes)
    assert any("--ln plugin: no LayerNorm to replace" in n for n in result.notes)
    outcome = check(RMSNormModel(), example_inputs=(x,))
    assert outcome.passed and outcome.worst[1]["max_abs"] < 1e-5
    assert any("no LayerNormalization node" in n for n in outcome.notes)


def test_a_model_with_layer_norm_gets_no_such_note(tmp_path):
    result = export(nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16)), tmp_path / "ln.onnx",
                    example_inputs=(torch.randn(2, 16),))
    assert not result.notes
