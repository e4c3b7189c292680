"""A value that is both a graph output and read by converted ops (``return y, f(y)``): the output
is fp32, the ops downstream read an fp16/bf16 copy, and the plan is consistent."""

import pytest
import torch
from torch import nn

from lndeploy.export import export


class OutputAndMore(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.ln = nn.LayerNorm(16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        y = self.ln(x)
        return y, self.head(y).pow(2).mean(-1)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_an_ln_output_read_downstream_too_plans_and_stays_fp32(tmp_path, precision):
    result = export(OutputAndMore(), tmp_path / "m.onnx", precision=precision, example_inputs=(torch.randn(3, 16),))
    errors = {name: max(run.max_abs[name] for run in result.verification) for name in ("output_0", "output_1")}
    assert errors["output_0"] < 1e-5  # the LN island's fp32 value itself, not a rounded copy
    assert errors["output_1"] < 1e-2
    assert [o.type.tensor_type.elem_type for o in result.model.graph.output] == [1, 1]
