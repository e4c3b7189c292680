"""Outputs of any structure: tensors are paired with the exported graph's outputs in the exporter's
order (None left out), dicts name them, other leaves are refused with where they occur."""

import numpy as np
import pytest
import torch
from torch import nn

from lndeploy import Session
from lndeploy.checker import check
from lndeploy.errors import BadInputError
from lndeploy.pipeline import export


class Returns(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.ln = nn.LayerNorm(16)
        self.shape = shape

    def forward(self, x):
        a = self.ln(x)
        if self.shape == "none_first":
            return None, a * 3
        if self.shape == "nested_dict":
            return {"z": a * 2, "a": a, "inner": {"q": a + 1}}
        if self.shape == "tuple_in_dict":
            return {"last": a, "hidden": (x, a - 1)}
        return a, 3  # "python_int"


def exported(tmp_path, shape):
    x = torch.randn(2, 16)
    return export(Returns(shape), tmp_path / "m.onnx", example_inputs=(x,)), x


def test_none_before_a_tensor_is_left_out_and_the_tensor_compared(tmp_path):
    result, x = exported(tmp_path, "none_first")
    assert [o.name for o in result.model.graph.output] == ["output"]
    got = Session(tmp_path / "m.onnx").run([x])["output"]
    assert np.max(np.abs(got - 3 * nn.functional.layer_norm(x, (16,)).numpy())) < 1e-5
    errors = [err for run in result.verification for err in run.max_abs.values()]
    assert errors and all(err < 1e-5 for err in errors), errors


@pytest.mark.parametrize("shape, names", [("nested_dict", ["z", "a", "inner.q"]),
                                          ("tuple_in_dict", ["last", "hidden.0", "hidden.1"])])
def test_nested_outputs_are_named_by_their_path_and_all_checked(tmp_path, shape, names):
    result, x = exported(tmp_path, shape)
    assert [o.name for o in result.model.graph.output] == names
    outcome = check(Returns(shape), onnx=tmp_path / "m.onnx", example_inputs=(x,))
    assert outcome.passed and list(outcome.outputs) == names  # names not empty: outputs not either
    assert all(stats["max_abs"] < 1e-5 for stats in outcome.outputs.values())


def test_a_python_number_output_is_bad_input_naming_it(tmp_path):
    with pytest.raises(BadInputError, match="returns an int at output output_1"):
        exported(tmp_path, "python_int")
    assert not (tmp_path / "m.onnx").exists()


def test_a_transformers_kv_cache_output_names_use_cache_false(tmp_path):
    # causal LMs in transformers return a DynamicCache unless use_cache=False; "torch.tensor(...)" misled
    from transformers import cache_utils  # the dev extra installs transformers

    class WithCache(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln = nn.LayerNorm(16)

        def forward(self, x):
            return {"last_hidden_state": self.ln(x), "past_key_values": cache_utils.DynamicCache()}

    with pytest.raises(BadInputError, match="DynamicCache at output past_key_values.*use_cache=False"):
        export(WithCache(), tmp_path / "m.onnx", example_inputs=(torch.randn(2, 16),))
    assert not (tmp_path / "m.onnx").exists()
