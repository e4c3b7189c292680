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
    """The factory named after the colon is the one called, not build()."""
    path = write(tmp_path, GOOD + """
    class Other(torch.nn.Module):
        def forward(self, a, b):
            return a - b
    def other():
        return Other()
""")
    spec = modelfile.load(path + ":other")
    assert type(spec.module).__name__ == "Other"
    a, b = spec.inputs.values()
    assert torch.equal(spec.call(spec.inputs), a - b)
    assert type(modelfile.load(path).module).__name__ == "M"


def test_dict_inputs_are_passed_by_keyword(tmp_path):
    path = write(tmp_path, """
        import torch
        class M(torch.nn.Module):
            def forward(self, x, scale=None):
                return x * scale
        def build(): return M()
        def example_inputs(): return {"scale": torch.full((1,), 2.0), "x": torch.ones(2)}
        def dynamic_axes(): return {"x": {0: "batch"}}
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
         "is an int, not a torch.Tensor"),
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


def test_dataclass_in_a_model_file_loads(tmp_path):
    """Model files run as modules do: registered in sys.modules while they execute."""
    path = write(tmp_path, """
        from __future__ import annotations
        from dataclasses import dataclass
        import torch
        @dataclass
        class Config:
            width: int = 4
        def build(): return torch.nn.Linear(Config().width, 2)
        def example_inputs(): return (torch.randn(2, Config().width),)
    """)
    assert modelfile.load(path).input_names == ["input"]


def test_non_python_file_is_bad_input(tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("def build(): pass\n")
    with pytest.raises(BadInputError, match=r"must be a Python file \(\.py\)"):
        modelfile.load(str(path))


def test_module_name_from_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "mymodel_cwd.py").write_text(textwrap.dedent(GOOD))
    monkeypatch.chdir(tmp_path)
    assert modelfile.load("mymodel_cwd").input_names == ["a", "b"]


def test_missing_dependency_inside_a_module_is_named(tmp_path, monkeypatch):
    (tmp_path / "needs_dep.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInputError, match="No module named 'no_such_dependency_xyz'"):
        modelfile.load("needs_dep")


def test_inputs_sharing_a_dim_name_must_agree_on_its_size(tmp_path):
    path = write(tmp_path, GOOD.replace("torch.randn(2, 3), torch.randn(2, 3)", "torch.randn(3, 3), torch.randn(5, 3)"))
    with pytest.raises(BadInputError, match="share dynamic dim 'batch' but their example sizes differ"):
        modelfile.load(path)


def test_an_input_without_batch_dim_and_no_dynamic_axes_says_how_to_declare_it(tmp_path):
    path = write(tmp_path, GOOD.replace("torch.randn(2, 3), torch.randn(2, 3)", "torch.randn(2, 3), torch.randn(3)"))
    with pytest.raises(BadInputError, match=r"define dynamic_axes\(\) to say which are\): inputs 'a' and 'b'"):
        modelfile.load(path)


def test_varargs_forward_names_inputs_by_position():
    class VarArgs(torch.nn.Module):
        def forward(self, *tensors):
            return sum(tensors)

    spec = modelfile.from_module(VarArgs(), (torch.ones(2), torch.ones(2)))
    assert spec.input_names == ["input_0", "input_1"]


def test_resolve_needs_example_inputs_for_a_module():
    with pytest.raises(BadInputError, match="needs example_inputs"):
        modelfile.resolve(torch.nn.Identity())
    with pytest.raises(BadInputError, match="model must be"):
        modelfile.resolve(42)
