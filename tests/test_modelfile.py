"""The model-file contract (SPEC section 1) and its errors."""

import textwrap

import pytest
import torch

from lndeploy import modelfile
from lndeploy.errors import BadInputError
from tests.conftest import zoo_model


def write(tmp_path, body: str, name: str = "m.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


GOOD = """
    import torch
    class M(torch.nn.Module):
        def forward(self, a, b):
            return a + b
    def build():
        return M()
    def other():
        return M()
    def example_inputs():
        return (torch.randn(2, 3), torch.randn(2, 3))
"""


def test_zoo_model_loads_with_names_from_dynamic_axes():
    spec = modelfile.load(zoo_model("rnn"))
    assert spec.input_names == ["x"]
    assert spec.dynamic_axes == {"x": {0: "batch", 1: "seq"}}
    assert not spec.module.training


def test_names_come_from_forward_and_dim0_is_batch_by_default(tmp_path):
    spec = modelfile.load(write(tmp_path, GOOD))
    assert spec.input_names == ["a", "b"]
    assert spec.dynamic_axes == {"a": {0: "batch"}, "b": {0: "batch"}}


def test_factory_after_colon(tmp_path):
    spec = modelfile.load(write(tmp_path, GOOD) + ":other")
    assert isinstance(spec.module, torch.nn.Module)


def test_dict_inputs_are_passed_by_keyword(tmp_path):
    path = write(tmp_path, """
        import torch
        class M(torch.nn.Module):
            def forward(self, x, scale=None):
                return x * scale
        def build(): return M()
        def example_inputs(): return {"scale": torch.full((1,), 2.0), "x": torch.ones(2)}
    """)
    spec = modelfile.load(path)
    assert spec.as_kwargs and spec.input_names == ["scale", "x"]
    assert torch.equal(spec.call(spec.inputs), torch.full((2,), 2.0))


def test_module_name_reference():
    spec = modelfile.load("models.fnn")  # a dotted module name, importable from the repo root
    assert spec.input_names == ["input"]
    with pytest.raises(BadInputError, match="neither a file nor an importable module"):
        modelfile.load("no_such_module_xyz")


@pytest.mark.parametrize(
    "body, message",
    [
        ("import torch\ndef example_inputs(): return (torch.ones(1),)\n", "defines no build"),
        ("def build(): raise RuntimeError('weights missing')\ndef example_inputs(): return ()\n",
         r"build\(\) raised RuntimeError: weights missing"),
        ("import torch\ndef build(): return 42\ndef example_inputs(): return ()\n", "must return a torch.nn.Module"),
        ("import torch\ndef build(): return torch.nn.Identity()\ndef example_inputs(): return [1]\n",
         "is a int, not a torch.Tensor"),
        ("import torch\ndef build(): return torch.nn.Identity()\ndef example_inputs(): return 'x'\n",
         "must return a tuple of tensors or a dict"),
        ("import torch\ndef build(): return torch.nn.Identity()\n", "defines no example_inputs"),
        ("import torch\ndef build(): return torch.nn.Identity()\n"
         "def example_inputs(): return (torch.ones(2),)\ndef dynamic_axes(): return {'y': {0: 'b'}}\n",
         "names input 'y'"),
        ("import torch\ndef build(): return torch.nn.Identity()\n"
         "def example_inputs(): return (torch.ones(2),)\ndef dynamic_axes(): return {'input': {3: 'b'}}\n",
         "has dim 3, input rank is 1"),
        ("def (:\n", "loading .* failed: SyntaxError"),
    ],
)
def test_bad_model_files_raise_one_line(tmp_path, body, message):
    with pytest.raises(BadInputError, match=message) as info:
        modelfile.load(write(tmp_path, body))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="model file not found"):
        modelfile.load(str(tmp_path / "absent.py"))
