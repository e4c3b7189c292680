"""Export: one LN node per LN, dynamic dims kept, traps turned into errors, nothing half-written."""

import textwrap

import numpy as np
import onnx
import pytest
import torch

from lndeploy import Session, plugin_spec
from lndeploy.errors import BadInputError
from lndeploy.pipeline import export
from tests.conftest import ZOO, zoo_model

LN_COUNT = {"fnn": 2, "cnn": 2, "rnn": 1, "lstm": 3, "gru": 2, "transformer": 3}


def all_nodes(model):
    return [n for g in plugin_spec.iter_graphs(model.graph) for n in g.node]


@pytest.fixture(scope="module")
def exported(zoo_export):
    return {name: zoo_export(name) for name in ZOO}


@pytest.mark.parametrize("name", ZOO)
def test_one_layernormalization_per_ln_and_no_primitive_ln(exported, name):
    nodes = all_nodes(exported[name].model)
    ops = [n.op_type for n in nodes]
    assert ops.count("LayerNormalization") == LN_COUNT[name]
    assert "ReduceMean" not in ops
    assert onnx.load(exported[name].path).opset_import[0].version == 18


def test_cnn_ln_is_over_chw_with_chw_scale(exported):
    model = exported["cnn"].model
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    lns = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert [onnx.helper.get_attribute_value(a) for n in lns for a in n.attribute if a.name == "axis"] == [-3, -3]
    assert [inits[n.input[1]] for n in lns] == [(16, 32, 32), (32, 16, 16)]
    assert [inits[n.input[2]] for n in lns] == [(16, 32, 32), (32, 16, 16)]


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_recurrent_exports_are_scans_matching_pytorch_at_any_length(exported, name):
    model = exported[name].model
    assert [n.op_type for n in model.graph.node].count("Scan") == 1
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_param) == ("batch", "seq")
    module = __import__("lndeploy.modelfile").modelfile.load(zoo_model(name)).module
    session = Session(exported[name].path)
    for length in (1, 7, 100):
        x = torch.randn(2, length, 16)
        got = session.run([x])
        with torch.no_grad():
            expected = torch.utils._pytree.tree_leaves(module(x))
        assert len(got) == len(expected) >= 2  # the output sequence and the final state(s)
        for value, ref in zip(got.values(), expected):
            assert value.shape == tuple(ref.shape)
            assert np.max(np.abs(value - ref.numpy())) < 1e-4


def test_plugin_export_has_plugin_nodes_with_spec_attributes(tmp_path):
    result = export(zoo_model("cnn"), tmp_path / "p.onnx", ln="plugin")
    model = onnx.load(result.path)
    nodes = all_nodes(model)
    assert "LayerNormalization" not in [n.op_type for n in nodes]
    plugins = [n for n in nodes if n.op_type == plugin_spec.OP_TYPE]
    assert len(plugins) == 2
    for node in plugins:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["axis"] == -3 and attrs["plugin_version"] == b"1"
        assert attrs["plugin_namespace"] == b"lndeploy" and attrs["epsilon"] == pytest.approx(1e-5)
    # the file meant for TensorRT carries no local function that its parser would import instead
    assert len(model.functions) == 0


@pytest.mark.slow
def test_plugin_export_inside_scan_body(tmp_path):
    result = export(zoo_model("lstm"), tmp_path / "p.onnx", ln="plugin")
    scan = next(n for n in result.model.graph.node if n.op_type == "Scan")
    body_ops = [n.op_type for n in scan.attribute[0].g.node]
    assert body_ops.count(plugin_spec.OP_TYPE) == 3 and "LayerNormalization" not in body_ops


def test_opset_below_17_is_refused_and_nothing_written(tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(BadInputError, match="opset 16 is below 17"):
        export(zoo_model("fnn"), out, opset=16)
    assert list(tmp_path.iterdir()) == []


def test_python_loop_over_a_dynamic_sequence_is_an_error_not_a_truncating_model(tmp_path):
    path = tmp_path / "loop.py"
    path.write_text(textwrap.dedent("""
        import torch
        class Loop(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.cell = torch.nn.Linear(4, 4)
                self.ln = torch.nn.LayerNorm(4)
            def forward(self, x):
                h = torch.zeros(x.shape[0], 4)
                outs = []
                for t in range(x.size(1)):
                    h = torch.tanh(self.ln(self.cell(x[:, t]) + h))
                    outs.append(h)
                return torch.stack(outs, 1)
        def build(): return Loop()
        def example_inputs(): return (torch.randn(2, 5, 4),)
        def dynamic_axes(): return {"x": {0: "batch", 1: "seq"}}
    """))
    out = tmp_path / "loop.onnx"
    with pytest.raises(BadInputError, match="specialised"):
        export(str(path), out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["loop.py"]
