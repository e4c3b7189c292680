"""A model calling lndeploy's custom op exports as one LayerNormalization (or plugin node)."""

import textwrap

import onnx
import pytest

from lndeploy import plugin_spec
from lndeploy.pipeline import export


@pytest.mark.slow
def test_custom_op_becomes_one_layernormalization(tmp_path):
    model = tmp_path / "op.py"
    model.write_text(textwrap.dedent("""
        import torch
        from lndeploy.nn.custom_op import layer_norm
        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.rand(4, 5) + 0.5)
                self.b = torch.nn.Parameter(torch.rand(4, 5))
            def forward(self, x):
                return layer_norm(x, self.w, self.b, 2, 1e-5) * 2
        def build(): return M()
        def example_inputs(): return (torch.randn(2, 4, 5),)
    """))
    native = export(str(model), tmp_path / "n.onnx")
    ln = [n for n in native.model.graph.node if n.op_type == "LayerNormalization"]
    assert len(ln) == 1
    assert {a.name: onnx.helper.get_attribute_value(a) for a in ln[0].attribute}["axis"] == -2
    plugin = export(str(model), tmp_path / "p.onnx", ln="plugin")
    assert len(plugin_spec.plugin_nodes(plugin.model)) == 1
    assert max(max(run.max_abs.values()) for run in plugin.verification) < 1e-5
