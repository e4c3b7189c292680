"""A value that is both a graph output and read by other ops (``return y, f(y)``): the plan stays
consistent, the output is the fp32 value itself, and the ops downstream get their own copy."""

import pytest
import torch
from torch import nn

from lndeploy.pipeline import export


class OutputAndMore(nn.Module):
    def __init__(self, readers):
        super().__init__()
        torch.manual_seed(0)
        self.ln = nn.LayerNorm(16)
        self.ln2 = nn.LayerNorm(16)
        self.head = nn.Linear(16, 4)
        self.readers = readers

    def forward(self, x):
        y = self.ln(x)
        if self.readers == "converted":  # an fp16 op reads the LN output
            return y, self.head(y).pow(2).mean(-1)
        if self.readers == "two_fp32":  # two fp32 ops read it (onnxconverter-common raised AttributeError)
            return y, self.ln2(y), y.sum(-1)
        return {"z": y * 0.5, "y": y, "inner": {"q": y + 1}}  # "mixed": one of each


@pytest.mark.parametrize("readers", ["converted", "two_fp32", "mixed"])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_an_output_read_downstream_plans_and_stays_fp32(tmp_path, precision, readers):
    model = OutputAndMore(readers)
    result = export(model, tmp_path / "m.onnx", precision=precision, example_inputs=(torch.randn(3, 16),))
    errors = {name: max(run.max_abs[name] for run in result.verification) for name in result.verification[0].max_abs}
    ln_output = "y" if readers == "mixed" else "output_0"
    assert errors[ln_output] < 1e-5  # the LN island's fp32 value itself, not a rounded copy
    assert max(errors.values()) < 1e-2
    assert result.model.graph.output and all(o.type.tensor_type.elem_type == 1 for o in result.model.graph.output)
