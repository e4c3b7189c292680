"""`check --layers`: a parity failure names the first normalization that diverges, by module path and
source line, and tells an error made there from one that arrived through its input (README "How check
decides", layer localisation)."""

import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from lndeploy.checker import CheckResult, check
from lndeploy.checker.layers import localise, table
from lndeploy.checker.taps import module_path
from tests.conftest import REPO, zoo_model

NORMS = ("LayerNormalization", "LndeployLayerNorm")


def line_of(model: str, text: str) -> int:
    lines = (REPO / "models" / f"{model}.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def own_initializer(graph, node, slot: int, change) -> None:
    """Give ``node`` its own copy of input ``slot``, changed: the exporter shares identical weights
    (every fresh LN's Scale is one tensor), so scaling the shared one would change every LN."""
    source = next(i for i in graph.initializer if i.name == node.input[slot])
    name = f"{node.name}_perturbed_{slot}"
    graph.initializer.append(numpy_helper.from_array(change(numpy_helper.to_array(source)), name))
    node.input[slot] = name


def perturbed(source, target, pick, slot=1, change=lambda w: (w * 1.05).astype(np.float32)):
    model = onnx.load(str(source))
    own_initializer(model.graph, pick(model.graph), slot, change)
    onnx.save(model, str(target))
    return str(target)


def middle_norm(graph):
    norms = [n for n in graph.node if n.op_type in NORMS]
    assert len(norms) == 3  # ln_attn, ln_mlp, ln_out
    return norms[1]


@pytest.mark.slow
def test_perturbed_middle_layernorm_is_named_with_its_source_line(run_cli, zoo_export, tmp_path):
    bad = perturbed(zoo_export("transformer").path, tmp_path / "ln.onnx", middle_norm)
    report = tmp_path / "r.json"
    result = run_cli("check", zoo_model("transformer"), "--onnx", bad, "--samples", "2", "--report", report)
    assert result.code == 1, result.err
    line = line_of("transformer", "self.ln_mlp(x)")
    assert f"first divergence: ln_mlp (models/transformer.py:{line})" in result.out
    assert "its input is within tolerance" in result.out and "this layer computes differently" in result.out
    data = json.loads(report.read_text())
    # where in the tensor: the failing output's worst element, both values, count and fraction over
    out = data["outputs"]["output"]
    assert f"worst at {out['worst_index']} (sample {out['worst_sample']}): {out['worst_actual']:.6g} vs PyTorch" \
        in result.out
    assert f"over tolerance {out['over_tolerance']}/{out['elements']} ({out['over_fraction']:.2%})" in result.out
    assert 0 < out["over_fraction"] <= 1 and out["worst_expected"] is not None
    first = data["first_divergence"]
    assert first["module"] == "ln_mlp" and first["source"].endswith(f"transformer.py:{line}")
    assert first["node"] == "node_layer_norm_1"
    assert first["max_abs"] > 1e-2 and first["input_max_abs"] < 1e-5  # wrong here, fine before
    assert [row["module"] for row in data["layers"]] == ["ln_attn", "ln_mlp", "ln_out"]
    assert data["layers"][0]["max_abs"] < 1e-5 and data["layers"][0]["over_fraction"] == 0
    assert data["layers"][1]["over_fraction"] > 0.5


@pytest.mark.slow
def test_perturbed_matmul_upstream_is_error_that_arrived_at_the_layernorm(run_cli, zoo_export, tmp_path):
    def proj_matmul(graph):  # the attention's output projection, before ln_mlp
        return next(n for n in graph.node if n.op_type == "MatMul" and module_path(n) == "proj")

    def nudge(w):
        w = w.copy()
        w.flat[0] += 0.5
        return w

    bad = perturbed(zoo_export("transformer").path, tmp_path / "mm.onnx", proj_matmul, change=nudge)
    report = tmp_path / "r.json"
    result = run_cli("check", zoo_model("transformer"), "--onnx", bad, "--samples", "2", "--report", report,
                     "--layers", "all")
    assert result.code == 1, result.err
    first = json.loads(report.read_text())["first_divergence"]
    assert first["module"] == "ln_mlp"
    assert first["input_max_abs"] > 1e-4 and first["input_over_fraction"] > 0  # arrived through its input
    assert "the error arrived here from upstream" in result.out
    assert "the first module over tolerance is proj" in result.out  # --layers all names the culprit


@pytest.mark.slow
def test_plugin_nodes_keep_the_metadata_and_are_localised(tmp_path):
    from lndeploy.pipeline import export

    plugin = tmp_path / "plugin.onnx"
    export(zoo_model("transformer"), plugin, ln="plugin")
    bad = perturbed(plugin, tmp_path / "bad.onnx", middle_norm)
    result = check(zoo_model("transformer"), onnx=bad, samples=1)
    assert not result.passed
    assert result.first_divergence["module"] == "ln_mlp" and result.first_divergence["source"]


@pytest.mark.slow
def test_layernorm_in_a_scan_body_is_compared_step_by_step(zoo_export, tmp_path):
    def body_norm(graph):
        scan = next(n for n in graph.node if n.op_type == "Scan")
        body = next(a.g for a in scan.attribute if a.name == "body")
        node = next(n for n in body.node if n.op_type == "LayerNormalization")
        # the Scale is an outer initializer: give the body node its own, in the main graph
        own_initializer(graph, node, 1, lambda w: (w * 1.05).astype(np.float32))
        return None

    model = onnx.load(zoo_export("rnn").path)
    body_norm(model.graph)
    bad = tmp_path / "rnn.onnx"
    onnx.save(model, str(bad))
    result = check(zoo_model("rnn"), onnx=str(bad), samples=1)
    first = result.first_divergence
    assert first["module"] == "rnn.cell.ln" and first["step"] == 0  # the first step is already wrong
    assert first["input_over_fraction"] == 0  # judged at that step: later steps carry the error back in


@pytest.mark.slow
def test_a_passing_check_compares_layers_only_when_asked(zoo_export):
    path = zoo_export("fnn").path
    quiet = check(zoo_model("fnn"), onnx=path, samples=1)
    assert quiet.passed and quiet.layers == [] and quiet.first_divergence is None
    asked = check(zoo_model("fnn"), onnx=path, samples=1, layers="norms")
    assert asked.passed and asked.first_divergence is None
    assert len(asked.layers) == 2 and all(row["max_abs"] <= 1e-4 for row in asked.layers)
    assert {"node", "module", "max_abs", "over_fraction"} <= set(asked.layers[0])


@pytest.mark.slow
def test_foreign_onnx_without_metadata_pairs_norms_by_order(tmp_path):
    from lndeploy import modelfile

    spec = modelfile.load(zoo_model("transformer"))
    legacy = tmp_path / "legacy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation warning
        torch.onnx.export(spec.module, (spec.inputs["tokens"],), str(legacy), dynamo=False, opset_version=17,
                          input_names=["tokens"], dynamic_axes={"tokens": {0: "batch", 1: "seq"}})
    model = onnx.load(str(legacy))
    norm = middle_norm(model.graph)
    assert not norm.metadata_props
    model.graph.initializer.append(numpy_helper.from_array(np.full(128, 1.05, np.float32), "perturbed"))
    norm.input[1] = "perturbed"
    onnx.save(model, str(legacy))
    result = check(zoo_model("transformer"), onnx=str(legacy), samples=1)
    first = result.first_divergence
    assert first["module"] == "ln_mlp" and first["node"] == norm.name
    assert first["source"].endswith(f"transformer.py:{line_of('transformer', 'self.ln_mlp(x)')}")


@pytest.mark.slow
def test_functional_layer_norm_inside_a_block_is_not_compared_with_the_block():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, x):  # the block's output is not the LN's: hooking the block would mislead
            return torch.nn.functional.layer_norm(self.proj(x), (8,)) * 2

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()

        def forward(self, x):
            return self.block(x)

    torch.manual_seed(0)
    result = check(Model().eval(), example_inputs=(torch.randn(2, 8),), layers="norms", samples=1)
    assert result.passed and result.layers == []
    assert any("functional call inside a bigger module" in note for note in result.notes)


def test_an_engine_says_why_it_is_not_localised():
    result = CheckResult(passed=False, backend="tensorrt", provider="-", atol=1e-4, rtol=None, artifact="x.engine")
    localise(None, "x.engine", "tensorrt", None, result)
    assert result.layers == [] and "ONNX file the engine was built from" in result.notes[0]


def test_terminal_table_is_shortened_around_the_first_divergence():
    rows = [{"node": f"n{i}", "module": f"m{i}", "max_abs": 1.0 if i >= 30 else 1e-7, "over_fraction": 0.0}
            for i in range(50)]
    lines = table(rows, {"node": "n30"}, limit=10)
    marked = [line for line in lines if line.startswith("  * ")]
    assert len(marked) == 1 and "m30" in marked[0]
    assert "25 earlier" in lines[1] and "15 more in the report" in lines[-1]
    assert len(lines) == 1 + 1 + 10 + 1


@pytest.mark.slow
def test_channel_first_layernorm_of_a_fused_convnext_block_is_compared_around_its_transposes(tmp_path):
    """ConvNeXt's hand-written channel-first LN, fused to Transpose -> LayerNormalization -> Transpose:
    its module's output is NCHW, the node's NHWC; the comparison widens to what leaves the module."""
    import lndeploy
    from lndeploy.pipeline import export

    model = str(REPO / "tests" / "passes" / "convnext_block.py")
    export(model, tmp_path / "cnx.onnx")
    lndeploy.fuse(str(tmp_path / "cnx.onnx"), str(tmp_path / "fused.onnx"), to="native")
    bad = perturbed(tmp_path / "fused.onnx", tmp_path / "bad.onnx",
                    lambda g: next(n for n in g.node if n.op_type == "LayerNormalization"))
    result = check(model, onnx=bad, samples=1)
    first = result.first_divergence
    line = next(i for i, text in enumerate(open(model).read().splitlines(), 1) if "self.norm(self.dwconv(x))" in text)
    assert first["module"] == "norm" and first["source"].endswith(f"convnext_block.py:{line}")
    assert first["max_abs"] > 1e-3 and first["input_over_fraction"] == 0
