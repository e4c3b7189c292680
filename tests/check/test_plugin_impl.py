"""Plugin nodes through lndeploy's own Triton kernel on the CPU: ``check --plugin-impl kernel`` (issue 11,
item 5). The kernel runs under the Triton interpreter in a worker process (lndeploy/backends/plugin_kernel.py).

A wrong kernel is a real one: the shipped kernel file with one change, Bessel's correction in the variance
(divide by N - 1, as ``torch.var`` does by default and LayerNorm does not), loaded by the worker through
``LNDEPLOY_PLUGIN_KERNEL``.
"""

from __future__ import annotations

import importlib.util
import json

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from lndeploy import plugin_spec
from lndeploy.backends.plugin_kernel import KERNEL_FILE_ENV, KERNEL_MODULE
from lndeploy.pipeline import export
from lndeploy.session import Session
from tests.conftest import zoo_model

SHIPPED_VARIANCE = "var = tl.sum(xc * xc, axis=1) / N"


@pytest.fixture
def wrong_kernel(tmp_path, monkeypatch):
    """The shipped kernel with an unbiased variance, for every worker started in this test."""
    source = open(importlib.util.find_spec(KERNEL_MODULE).origin).read()
    assert source.count(SHIPPED_VARIANCE) == 1, "the kernel's variance line moved: update this fixture"
    path = tmp_path / "unbiased_variance_kernel.py"
    path.write_text(source.replace(SHIPPED_VARIANCE, "var = tl.sum(xc * xc, axis=1) / (N - 1)"))
    monkeypatch.setenv(KERNEL_FILE_ENV, str(path))
    return path


@pytest.fixture(scope="module")
def plugin_exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin")
    cache = {}

    def get(name: str) -> str:
        if name not in cache:
            cache[name] = str(folder / f"{name}.onnx")
            export(zoo_model(name), cache[name], ln="plugin")
        return cache[name]

    return get


def _plugin_graph(dtype: str, shape=(2, 3, 4, 5), axis=-2):
    """One plugin node over x, normalised over x.shape[axis:], with random Scale and B initializers."""
    elem = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}[dtype]
    rng = np.random.default_rng(0)
    params = [numpy_helper.from_array(_cast(rng.normal(size=shape[axis:]), dtype), name) for name in ("scale", "bias")]
    node = plugin_spec.make_node("x", "scale", "bias", "y", epsilon=1e-5, axis=axis)
    graph = helper.make_graph([node], "plugin", [helper.make_tensor_value_info("x", elem, ["batch", *shape[1:]])],
                              [helper.make_tensor_value_info("y", elem, ["batch", *shape[1:]])], params)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    plugin_spec.ensure_opset_import(model)
    return model, [numpy_helper.to_array(p).astype(np.float64) for p in params]


def _cast(array, dtype):
    return array.astype({"fp32": np.float32, "fp16": np.float16, "bf16": ml_dtypes.bfloat16}[dtype])


@pytest.mark.parametrize("dtype,bound", [("fp32", 1e-6), ("fp16", 4e-3), ("bf16", 3e-2)])
def test_kernel_runs_plugin_nodes_in_every_dtype_over_several_trailing_axes(dtype, bound):
    model, (scale, bias) = _plugin_graph(dtype)
    x = _cast(np.random.default_rng(1).normal(2.0, 3.0, size=(3, 3, 4, 5)), dtype)
    with Session(model, backend="onnx-reference", plugin_impl="kernel") as session:
        y = session.run({"x": x})["y"]
    assert y.dtype == x.dtype and y.shape == x.shape
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(-2, -1), keepdims=True)
    var = x64.var(axis=(-2, -1), keepdims=True)
    expected = (x64 - mean) / np.sqrt(var + 1e-5) * scale + bias
    err = float(np.abs(y.astype(np.float64) - expected).max())
    print(dtype, "kernel vs float64 LN:", err)  # measured: fp32 3.4e-7, fp16 9.7e-4, bf16 1.6e-2 (|y| up to 6)
    assert err <= bound


@pytest.mark.slow
def test_a_wrong_kernel_changes_plugin_nodes_inside_a_scan_body(plugin_exports, wrong_kernel, monkeypatch):
    """The RNN's only LN is inside its Scan body: the wrong kernel moving the output proves the
    evaluator ran the kernel there, and the right one matching ONNX's LayerNormalization proves it
    ran it correctly."""
    path = plugin_exports("rnn")
    feed = {"x": np.random.default_rng(2).normal(size=(3, 7, 16)).astype(np.float32)}
    runs = {}
    for name in ("onnx", "kernel", "wrong"):
        if name == "kernel":
            monkeypatch.delenv(KERNEL_FILE_ENV)
        if name == "wrong":
            monkeypatch.setenv(KERNEL_FILE_ENV, str(wrong_kernel))
        with Session(path, backend="onnx-reference", plugin_impl="onnx" if name == "onnx" else "kernel") as s:
            runs[name] = s.run(feed)
    right = max(float(np.abs(runs["kernel"][k] - runs["onnx"][k]).max()) for k in runs["onnx"])
    wrong = max(float(np.abs(runs["wrong"][k] - runs["onnx"][k]).max()) for k in runs["onnx"])
    print("rnn Scan, kernel vs ONNX LN:", right, "wrong kernel:", wrong)  # measured: 0.0 and 9.2e-3
    assert right <= 1e-6 and wrong > 1e-3


@pytest.mark.slow
def test_check_with_the_kernel_passes_and_the_report_says_kernel(plugin_exports, run_cli, tmp_path):
    report = tmp_path / "r.json"
    done = run_cli("check", zoo_model("transformer"), "--onnx", plugin_exports("transformer"), "--plugin-impl",
                   "kernel", "--samples", "2", "--report", report)
    assert done.code == 0, done.out + done.err
    data = json.loads(report.read_text())
    assert data["plugin_impl"] == "kernel" and data["backend"] == "onnx-reference"
    assert data["outputs"]["output"]["max_abs"] <= 1e-5  # measured: 9.5e-7
    assert "plugin nodes ran on: kernel" in done.out


@pytest.mark.slow
def test_check_with_a_wrong_kernel_fails_with_exit_1(plugin_exports, run_cli, wrong_kernel, tmp_path):
    report = tmp_path / "r.json"
    done = run_cli("check", zoo_model("transformer"), "--onnx", plugin_exports("transformer"), "--plugin-impl",
                   "kernel", "--samples", "2", "--report", report)
    assert done.code == 1, done.out + done.err
    data = json.loads(report.read_text())
    assert data["plugin_impl"] == "kernel" and data["outputs"]["output"]["max_abs"] > 1e-3
    assert "parity FAILED" in done.out
    # the layers ran on the kernel too: the first plugin node (the first LN) is where it diverges
    first = data["first_divergence"]
    assert first is not None and "ln" in (first["module"] or first["node"]).lower(), first
    assert first["input_max_abs"] is not None and first["input_max_abs"] < 1e-4 < first["max_abs"]
    print("transformer, wrong kernel:", data["outputs"]["output"]["max_abs"])  # measured: 1.4e-2


def test_the_default_still_runs_onnx_layernormalization(plugin_exports, run_cli, wrong_kernel, tmp_path):
    """Without --plugin-impl kernel no kernel runs (the wrong one goes unnoticed), and the report says so."""
    report = tmp_path / "r.json"
    done = run_cli("check", zoo_model("transformer"), "--onnx", plugin_exports("transformer"), "--samples", "1",
                   "--report", report)
    assert done.code == 0, done.out + done.err
    assert json.loads(report.read_text())["plugin_impl"] == "onnx-function"


def test_kernel_needs_plugin_nodes_and_the_reference_backend(zoo_export, plugin_exports, run_cli):
    native = run_cli("check", zoo_model("fnn"), "--onnx", zoo_export("fnn").path, "--plugin-impl", "kernel")
    assert native.code == 2 and "--ln plugin" in native.err
    ort = run_cli("check", zoo_model("transformer"), "--onnx", plugin_exports("transformer"), "--plugin-impl",
                  "kernel", "--backend", "onnxruntime")
    assert ort.code == 2 and "onnx-reference" in ort.err


def test_a_kernel_that_does_not_load_is_exit_3(plugin_exports, run_cli, tmp_path, monkeypatch):
    broken = tmp_path / "broken_kernel.py"
    broken.write_text("raise ImportError('no kernel here')\n")
    monkeypatch.setenv(KERNEL_FILE_ENV, str(broken))
    done = run_cli("check", zoo_model("transformer"), "--onnx", plugin_exports("transformer"), "--plugin-impl",
                   "kernel", "--samples", "1")
    assert done.code == 3 and "no kernel here" in done.err
