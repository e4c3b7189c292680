"""Attention masks in reduced precision: the mask constants of `transformers` models
(``torch.finfo(torch.float32).min``) must stay finite, or a fully masked softmax row (a padded
query) is NaN where PyTorch gives a uniform row."""

import numpy as np
import pytest
import torch
from torch import nn

from lndeploy.check import check
from lndeploy.export import export


class MaskedAttention(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.ln = nn.LayerNorm(16)
        self.qkv = nn.Linear(16, 48)

    def forward(self, x, mask):
        q, k, v = self.qkv(self.ln(x)).chunk(3, dim=-1)
        scores = q @ k.transpose(-1, -2) / 4.0
        scores = scores.masked_fill(~mask[:, None, :], torch.finfo(torch.float32).min)
        return scores.softmax(-1) @ v


def inputs():
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1] = False  # every key of the second sequence masked: its softmax rows are uniform
    return torch.randn(2, 6, 16), mask


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_fully_masked_rows_stay_finite_and_match_pytorch(tmp_path, precision):
    x, mask = inputs()
    axes = {"x": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}}
    result = export(MaskedAttention(), tmp_path / "a.onnx", precision=precision, example_inputs=(x, mask),
                    dynamic_axes=axes)
    assert all(err < 1e-2 for run in result.verification for err in run.max_abs.values())
    # the reference evaluator computes in the declared types (ONNX Runtime's CPU provider upcasts)
    outcome = check(MaskedAttention(), onnx=tmp_path / "a.onnx", backend="onnx-reference", samples=3,
                    example_inputs=(x, mask), dynamic_axes=axes)
    worst = outcome.worst[1]["max_abs"]
    assert outcome.passed and np.isfinite(worst) and worst < 1e-2
