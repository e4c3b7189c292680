"""Attention masks in reduced precision: the mask constants of `transformers` models
(``torch.finfo(torch.float32).min``) must stay finite, or a fully masked softmax row (a padded
query) is NaN where PyTorch gives a uniform row."""

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from lndeploy.checker import check
from lndeploy.pipeline import export
from lndeploy.passes.precision import tensor_types
from tests.conftest import REPO


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
    errors = [err for run in result.verification for err in run.max_abs.values()]
    assert errors and all(err < 1e-2 for err in errors), errors
    # the reference evaluator computes in the declared types (ONNX Runtime's CPU provider upcasts)
    outcome = check(MaskedAttention(), onnx=tmp_path / "a.onnx", backend="onnx-reference", samples=3,
                    example_inputs=(x, mask), dynamic_axes=axes)
    worst = outcome.worst[1]["max_abs"]
    assert outcome.passed and np.isfinite(worst) and worst < 1e-2


@pytest.mark.slow
def test_t5_relative_position_buckets_stay_fp32_in_fp16(tmp_path):
    """T5 computes bucket indices as (log(rel.float() / 8) / log(16) * 8).long(): in fp16 some land in
    the neighbouring bucket (0.11 max abs error before they were kept fp32)."""
    t5 = str(REPO / "tests" / "user_models" / "t5_tiny.py")  # imports transformers (dev extra)
    result = export(t5, tmp_path / "t5.onnx", precision="fp16")
    worst = max(err for run in result.verification for err in run.max_abs.values())
    assert worst < 5e-3
    outcome = check(t5, onnx=tmp_path / "t5.onnx", backend="onnx-reference", samples=2)
    assert outcome.passed and outcome.worst[1]["max_abs"] < 5e-3
    types = tensor_types(onnx.shape_inference.infer_shapes(result.model))
    logs = [n for n in result.model.graph.node if n.op_type == "Log"]
    assert logs and all(types[n.input[0]] == onnx.TensorProto.FLOAT for n in logs)
