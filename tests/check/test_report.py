"""The check report on every exit path, its fields, and user tolerances reaching every gate (issue 10)."""

from __future__ import annotations

import hashlib
import json

import pytest

from lndeploy.errors import ParityError
from lndeploy.pipeline import export
from tests.conftest import zoo_model

NEW_FIELDS = ("schema", "created", "versions", "model", "artifact", "seed", "plugin_impl", "budget",
              "first_divergence", "layers", "exit_code")


def test_passing_report_has_the_spec_fields_and_the_artifact_digest(run_cli, zoo_export, tmp_path):
    onnx_path = zoo_export("fnn").path
    report = tmp_path / "r.json"
    done = run_cli("check", zoo_model("fnn"), "--onnx", onnx_path, "--report", report, "--seed", "5")
    assert done.code == 0, done.err
    data = json.loads(report.read_text())
    for key in NEW_FIELDS:
        assert key in data, key
    assert data["artifact"]["sha256"] == hashlib.sha256(open(onnx_path, "rb").read()).hexdigest()
    assert data["seed"] == 5 and data["model"] == zoo_model("fnn") and data["exit_code"] == 0
    assert data["versions"]["torch"] and data["versions"]["onnx"] and data["plugin_impl"] is None
    assert data["budget"]["mode"] == "fixed" and data["budget"]["limit"] == 1e-4
    assert data["samples"] and all(list(s["shapes"].values())[0][0] in (1, 3) for s in data["samples"])
    stats = data["outputs"]["output"]
    for key in ("max_abs", "max_rel", "mean_abs", "worst_index", "over_tolerance"):
        assert key in stats, key
    assert stats["over_tolerance"] == 0 and stats["elements"] > 0


def test_report_on_parity_failure_and_dash_prints_it(run_cli, tmp_path):
    done = run_cli("check", zoo_model("fnn"), "--atol", "1e-12", "--report", "-")
    assert done.code == 1
    data = json.loads(done.out)  # stdout is the report alone; the human lines went to stderr
    assert data["passed"] is False and data["exit_code"] == 1
    assert "atol 1e-12" in data["error"] and "export verification failed" in data["error"]
    assert "parity FAILED" in done.err or "export verification" in done.err


def test_user_atol_reaches_the_export_gate_and_the_check(run_cli, tmp_path):
    """fp16 with --atol 0.05: the export verification runs at 0.05 and the check too (the built-in
    export gate used to ignore it and fail at 1e-2)."""
    report = tmp_path / "r.json"
    done = run_cli("check", zoo_model("fnn"), "--precision", "fp16", "--atol", "0.05", "--report", report)
    assert done.code == 0, done.err
    assert json.loads(report.read_text())["tolerance"]["atol"] == 0.05
    result = export(zoo_model("fnn"), tmp_path / "f.onnx", precision="fp16", atol=0.05)
    assert result.tolerance.atol == 0.05
    with pytest.raises(ParityError, match="atol 1e-12"):
        export(zoo_model("fnn"), tmp_path / "g.onnx", atol=1e-12)
    assert not (tmp_path / "g.onnx").exists()


def test_export_cli_has_atol_and_rtol(run_cli, tmp_path):
    out = tmp_path / "f.onnx"
    done = run_cli("export", zoo_model("fnn"), "-o", out, "--atol", "1e-3", "--rtol", "1e-3")
    assert done.code == 0, done.err
    assert "atol 0.001, rtol 0.001" in done.out
    bad = run_cli("export", zoo_model("fnn"), "-o", tmp_path / "h.onnx", "--atol", "1e-12")
    assert bad.code == 1 and "export verification failed" in bad.err
