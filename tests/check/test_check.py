"""Parity check: every zoo model passes, a tampered artifact fails and names its output."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from lndeploy.checker import check
from lndeploy.pipeline import export
from tests.conftest import REPO, ZOO, zoo_model


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_passes_with_spec_report(run_cli, tmp_path, name):
    report = tmp_path / "r.json"
    result = run_cli("check", zoo_model(name), "--report", report)
    assert result.code == 0, result.err
    data = json.loads(report.read_text())
    assert data["passed"] is True
    assert data["backend"] == "onnxruntime" and data["provider"] == "CPUExecutionProvider"
    assert data["tolerance"] == {"atol": 1e-4, "rtol": None}
    assert data["outputs"] and all(o["max_abs"] <= 1e-4 for o in data["outputs"].values())
    assert all({"max_abs", "max_rel", "mean_abs"} <= set(o) for o in data["outputs"].values())
    sizes = [s["sizes"] for s in data["samples"]]
    assert {s["batch"] for s in sizes} == {1, 3}
    if name in ("rnn", "lstm", "gru", "transformer"):
        assert {s["seq"] for s in sizes} == {1, 7, 64}


@pytest.fixture(scope="module")
def fnn_onnx(zoo_export):
    return zoo_export("fnn").path


def tamper(source, target, change):
    model = onnx.load(source)
    change(model)
    onnx.save(model, target)
    return target


def test_altered_epsilon_fails_and_names_the_output(run_cli, fnn_onnx, tmp_path):
    def bump_eps(model):
        ln = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
        for attr in ln.attribute:
            if attr.name == "epsilon":
                attr.f = 10.0

    bad = tamper(fnn_onnx, tmp_path / "eps.onnx", bump_eps)
    result = run_cli("check", zoo_model("fnn"), "--onnx", bad)
    assert result.code == 1
    last = result.out.strip().splitlines()[-1]
    assert "FAILED" in last and "'output'" in last and "atol 0.0001" in last


def test_altered_ln_weight_fails(fnn_onnx, tmp_path):
    def scale_gamma(model):
        ln = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
        init = next(i for i in model.graph.initializer if i.name == ln.input[1])
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.01, init.name))

    bad = tamper(fnn_onnx, tmp_path / "w.onnx", scale_gamma)
    result = check(zoo_model("fnn"), onnx=str(bad))
    assert not result.passed
    assert result.outputs["output"]["max_abs"] > 1e-4


@pytest.mark.slow
def test_user_bert_model_checks_without_lndeploy_changes(run_cli, tmp_path):
    report = tmp_path / "bert.json"  # the model imports transformers (dev extra)
    result = run_cli("check", REPO / "tests" / "user_models" / "bert_tiny.py", "--report", report)
    assert result.code == 0, result.err
    assert json.loads(report.read_text())["outputs"]["last_hidden_state"]["max_abs"] <= 1e-4


def test_cli_ln_plugin_reaches_the_check(run_cli, tmp_path):
    """The CLI's --ln plugin is what check exports with (every zoo model's plugin parity is below)."""
    report = tmp_path / "r.json"
    result = run_cli("check", zoo_model("fnn"), "--ln", "plugin", "--report", report)
    assert result.code == 0, result.err
    data = json.loads(report.read_text())
    assert data["passed"] is True and data["ln"] == "plugin" and "ln=plugin" in data["artifact"]["path"]
    assert data["plugin_impl"] == "onnx-function" and len(data["artifact"]["sha256"]) == 64
    assert data["outputs"] and all(o["max_abs"] <= 1e-4 for o in data["outputs"].values())


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_plugin_model_passes_on_cpu(name):
    """Plugin nodes run on ONNX Runtime through the in-memory reference function."""
    result = check(zoo_model(name), ln="plugin")
    assert result.passed, result.summary()
    assert result.ln == "plugin" and result.outputs and all(o["max_abs"] <= 1e-4 for o in result.outputs.values())


def test_rtol_loosens_the_gate(fnn_onnx, tmp_path):
    def nudge_bias(model):
        head = model.graph.initializer[-1]
        arr = numpy_helper.to_array(head)
        head.CopyFrom(numpy_helper.from_array((arr * (1 + 3e-4)).astype(np.float32), head.name))

    bad = tamper(fnn_onnx, tmp_path / "n.onnx", nudge_bias)
    strict = check(zoo_model("fnn"), onnx=str(bad), atol=1e-7)
    loose = check(zoo_model("fnn"), onnx=str(bad), atol=1e-7, rtol=1e-2)
    assert not strict.passed and loose.passed
    # the summary names the gate that passed it, not the atol alone it exceeds
    assert "(tolerance atol 1e-07, rtol 0.01)" in loose.summary() and ", rtol" not in strict.summary()
    # a failure whose relative error is small says that --rtol exists, and where the worst element is
    assert "--rtol also passes" in strict.summary() and "worst at [" in strict.summary()


def test_a_report_into_a_missing_folder_is_refused_naming_the_option(run_cli, tmp_path):
    result = run_cli("check", zoo_model("fnn"), "--report", tmp_path / "missing" / "r.json")
    assert result.code == 2 and "--report: output folder does not exist" in result.err


def test_artifact_precision_sets_the_tolerance_and_contradictions_are_refused(run_cli, tmp_path):
    fp16 = tmp_path / "of16.onnx"
    export(zoo_model("overflow"), fp16, precision="fp16")
    report = tmp_path / "r.json"
    assert run_cli("check", zoo_model("overflow"), "--onnx", fp16, "--report", report).code == 0
    data = json.loads(report.read_text())
    assert data["precision"] == "fp16" and data["tolerance"]["atol"] == 1e-2
    refused = run_cli("check", zoo_model("overflow"), "--onnx", fp16, "--precision", "fp32")
    assert refused.code == 2 and "contradicts the artifact, which is fp16" in refused.err


def test_artifact_that_fails_where_pytorch_runs_is_a_parity_failure(run_cli, tmp_path):
    """A legacy (unrolled) RNN export fails at other lengths: exit 1 naming the inputs, not exit 2."""
    import torch

    from lndeploy import modelfile

    spec = modelfile.load(zoo_model("rnn"))
    legacy = tmp_path / "legacy.onnx"
    torch.onnx.export(spec.module, tuple(spec.inputs.values()), str(legacy), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["output_0", "output_1"],
                      dynamic_axes={"x": {0: "batch", 1: "seq"}})
    report = tmp_path / "r.json"
    result = run_cli("check", zoo_model("rnn"), "--onnx", legacy, "--report", report)
    assert result.code == 1
    last = result.out.strip().splitlines()[-2]
    assert "FAILED" in last and "which PyTorch runs" in last
    assert json.loads(report.read_text())["passed"] is False


def test_failure_output_is_our_lines_only(run_cli, fnn_onnx, tmp_path):
    """Polygraphy's own per-sample lines stay hidden without --debug."""
    def zero_gamma(model):
        ln = next(n for n in model.graph.node if n.op_type == "LayerNormalization")
        init = next(i for i in model.graph.initializer if i.name == ln.input[1])
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 0, init.name))

    bad = tamper(fnn_onnx, tmp_path / "z.onnx", zero_gamma)
    result = run_cli("check", zoo_model("fnn"), "--onnx", bad)
    assert result.code == 1
    lines = result.out.strip().splitlines()
    assert lines[0].startswith("output:") and "FAILED" in lines[-1], lines
    # in between: the layer table, the first divergence and notes, all lndeploy's own indented lines
    assert all(line.startswith("  ") for line in lines[1:-1]) and "first divergence: 1 (" in result.out, lines
    assert "[E]" not in result.out + result.err and "[W]" not in result.out + result.err


def test_in_memory_module_api():
    import torch

    module = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
    result = check(module, example_inputs=(torch.randn(2, 8),))
    assert result.passed and result.outputs["output"]["max_abs"] < 1e-5


def test_an_output_of_another_shape_is_a_parity_failure_naming_both_shapes(run_cli, fnn_onnx, tmp_path):
    def unsqueeze_output(model):
        out = model.graph.output[0]
        producer = next(n for n in model.graph.node if out.name in n.output)
        producer.output[:] = [f"{out.name}_pre"]
        axes = onnx.helper.make_tensor("unsq_axes", onnx.TensorProto.INT64, [1], [0])
        model.graph.initializer.append(axes)
        model.graph.node.append(onnx.helper.make_node("Unsqueeze", [f"{out.name}_pre", "unsq_axes"], [out.name]))
        out.type.tensor_type.shape.dim.insert(0, onnx.TensorShapeProto.Dimension(dim_value=1))

    bad = tamper(fnn_onnx, tmp_path / "u.onnx", unsqueeze_output)
    result = run_cli("check", zoo_model("fnn"), "--onnx", bad)
    assert result.code == 1, result.err
    last = result.out.strip().splitlines()[-1]
    assert "output 'output': shape [1, 1, 10] differs from the reference's [1, 10]" in last


UNSEEDED = """
import torch

def build():
    return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))

def example_inputs():
    return (torch.randn(2, 8),)
"""


def test_failed_check_of_an_unseeded_model_file_says_why(run_cli, tmp_path):
    """Each build() draws new weights, so an artifact exported by another call cannot match: the
    failure (exit 1) carries a note naming the cause instead of leaving a bare max abs error."""
    model = tmp_path / "unseeded.py"
    model.write_text(UNSEEDED)
    artifact = tmp_path / "m.onnx"
    assert run_cli("export", model, "-o", artifact).code == 0
    result = run_cli("check", model, "--onnx", artifact)
    assert result.code == 1, result.err
    assert "builds different weights on each call" in result.out and "seed build()" in result.out
    seeded = tmp_path / "seeded.py"
    seeded.write_text(UNSEEDED.replace("def build():\n", "def build():\n    torch.manual_seed(0)\n"))
    assert run_cli("export", seeded, "-o", artifact).code == 0
    passed = run_cli("check", seeded, "--onnx", artifact)
    assert passed.code == 0 and "different weights" not in passed.out, passed.out


def test_sizes_pytorch_refuses_with_an_empty_message_are_skipped_not_a_crash(tmp_path):
    """A model that raises ``RuntimeError()`` (no message) at batch 3: those sizes are skipped with the
    exception's name as the reason (reading the message's first line raised IndexError, exit 4)."""
    from tests.conftest import ln_model_source

    model = tmp_path / "picky.py"
    model.write_text(ln_model_source(on_call="if x.shape[0] == 3:\n    raise RuntimeError()"))
    result = check(str(model))
    assert result.passed, result.summary()
    assert result.skipped and all(s["sizes"]["batch"] == 3 for s in result.skipped)
    assert result.skipped[0]["reason"] == "RuntimeError: RuntimeError"
