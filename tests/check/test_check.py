"""Parity check: every zoo model passes, a tampered artifact fails and names its output."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from lndeploy.check import check
from lndeploy.export import export
from tests.conftest import ZOO, zoo_model


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
def fnn_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("fnn") / "fnn.onnx"
    export(zoo_model("fnn"), path)
    return path


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


def test_user_bert_model_checks_without_lndeploy_changes(run_cli, tmp_path):
    pytest.importorskip("transformers", reason="transformers (dev extra) is needed for the BERT user model")
    report = tmp_path / "bert.json"
    result = run_cli("check", "tests/user_models/bert_tiny.py", "--report", report)
    assert result.code == 0, result.err
    assert json.loads(report.read_text())["outputs"]["last_hidden_state"]["max_abs"] <= 1e-4


def test_plugin_model_passes_on_cpu(run_cli):
    result = run_cli("check", zoo_model("rnn"), "--ln", "plugin")
    assert result.code == 0, result.err


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_plugin_model_passes_on_cpu(name):
    """Plugin nodes run on ONNX Runtime through the in-memory reference function."""
    result = check(zoo_model(name), ln="plugin")
    assert result.passed, result.summary()
    assert result.ln == "plugin" and all(o["max_abs"] <= 1e-4 for o in result.outputs.values())


def test_rtol_loosens_the_gate(fnn_onnx, tmp_path):
    def nudge_bias(model):
        head = model.graph.initializer[-1]
        arr = numpy_helper.to_array(head)
        head.CopyFrom(numpy_helper.from_array((arr * (1 + 3e-4)).astype(np.float32), head.name))

    bad = tamper(fnn_onnx, tmp_path / "n.onnx", nudge_bias)
    strict = check(zoo_model("fnn"), onnx=str(bad), atol=1e-7)
    loose = check(zoo_model("fnn"), onnx=str(bad), atol=1e-7, rtol=1e-2)
    assert not strict.passed and loose.passed
