"""JUnit, Markdown and GitHub annotations of a check run, from cells whose results are built here
(the matrix that produces real ones runs in test_matrix.py)."""

import xml.etree.ElementTree as ET

import junitparser
import numpy as np

from lndeploy.checker import CheckResult, ci_outputs
from lndeploy.checker.matrix import Cell, MatrixRun
from lndeploy.parity import Tolerance, compare_outputs


def _result(outputs_actual, outputs_expected, atol=1e-4, first_divergence=None):
    stats = compare_outputs(outputs_actual, outputs_expected, Tolerance(atol))
    result = CheckResult(passed=all(s.passed for s in stats.values()), backend="onnxruntime",
                         provider="CPUExecutionProvider", atol=atol, rtol=None, artifact="m.onnx",
                         samples=[{"sizes": {"batch": 1}, "shapes": {}, "passed": True}])
    result.outputs = {name: {**s.to_dict(), "worst_sample": 0} for name, s in stats.items()}
    result.first_divergence = first_divergence
    return result


def _run(tmp_path):
    good = np.zeros((2, 3), np.float32)
    bad = good.copy()
    bad[1, 2] = 0.5
    passed = Cell("fnn", "models/fnn.py", "fp32", "native", "onnxruntime")
    passed.finish(0, "ok", _result({"out": good, "state": good}, {"out": good, "state": good}))
    divergence = {"node": "node_LayerNormalization_3", "module": "encoder.norm", "source": "models/m.py:42",
                  "max_abs": 0.5, "input_max_abs": 1e-7}
    failed = Cell("m", "models/m.py", "fp16", "plugin", "onnxruntime")
    result = _result({"out": bad, "state": good}, {"out": good, "state": good}, first_divergence=divergence)
    failed.finish(1, result.summary(), result)
    skipped = Cell("m", "models/m.py", "fp16", "plugin", "tensorrt")
    skipped.finish(3, "cannot run here: no GPU")
    broken = Cell("cnn", "models/cnn.py", "fp32", "native", "onnxruntime")
    broken.finish(2, "models/cnn.py: build() raised RuntimeError: boom")
    return MatrixRun("zoo.toml", [passed, failed, skipped, broken], seconds=3.0)


def test_junit_has_one_case_per_cell_and_output_and_reads_back(tmp_path):
    target = tmp_path / "j.xml"
    ci_outputs.write_junit(target, _run(tmp_path))
    xml = junitparser.JUnitXml.fromfile(str(target))
    cases = {(case.classname, case.name): case for suite in xml for case in suite}
    assert set(cases) == {("fnn.fp32.native.onnxruntime", "out"), ("fnn.fp32.native.onnxruntime", "state"),
                          ("m.fp16.plugin.onnxruntime", "out"), ("m.fp16.plugin.onnxruntime", "state"),
                          ("m.fp16.plugin.tensorrt", "check"), ("cnn.fp32.native.onnxruntime", "check")}
    failed = [key for key, case in cases.items() if any(isinstance(r, junitparser.Failure) for r in case.result)]
    assert failed == [("m.fp16.plugin.onnxruntime", "out")]
    message = cases[failed[0]].result[0].message
    assert "output 'out'" in message and "worst at [1, 2]" in message and "0.5 vs PyTorch 0" in message
    assert "first diverging layer 'encoder.norm'" in message and "models/m.py:42" in message
    assert isinstance(cases[("m.fp16.plugin.tensorrt", "check")].result[0], junitparser.Skipped)
    assert isinstance(cases[("cnn.fp32.native.onnxruntime", "check")].result[0], junitparser.Error)
    root = ET.parse(target).getroot()
    assert (root.tag, root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == \
        ("testsuites", "6", "1", "1", "1")


def test_summary_is_written_and_appended_to_the_step_summary(tmp_path, monkeypatch):
    step = tmp_path / "step.md"
    step.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    ci_outputs.write_summary(tmp_path / "s.md", _run(tmp_path))
    table = (tmp_path / "s.md").read_text()
    assert step.read_text() == "earlier step\n" + table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 4
    assert "| m | fp16 | plugin | onnxruntime | ❌ failed | out | 0.5 | 0.0001 |" in table
    assert "⏭️ skipped" in table and "cannot run here: no GPU" in table


def test_annotations_point_at_the_diverging_line_or_the_model_file(tmp_path):
    lines = ci_outputs.annotations(_run(tmp_path), workspace=".")
    assert len(lines) == 2  # the failed and the broken cell; not the skipped one
    assert lines[0].startswith("::error file=models/m.py,line=42,title=lndeploy check m.fp16.plugin.onnxruntime::")
    assert lines[1].startswith("::error file=models/cnn.py,title=") and "build() raised RuntimeError" in lines[1]
    assert all("\n" not in line for line in lines)


def test_exit_code_is_the_worst_cell_and_3_only_when_nothing_ran(tmp_path):
    run = _run(tmp_path)
    assert run.exit_code == 2
    run.cells.pop()
    assert run.exit_code == 1
    skipped_only = MatrixRun("x", [c for c in run.cells if c.status == "skipped"])
    assert skipped_only.exit_code == 3
    assert MatrixRun("x", [run.cells[0], *skipped_only.cells]).exit_code == 0


def test_a_divergence_traced_into_an_installed_package_is_annotated_at_the_model_file(tmp_path):
    run = _run(tmp_path)
    run.cells[1].result.first_divergence["source"] = "/venv/lib/python3.11/site-packages/torch/nn/container.py:253"
    line = ci_outputs.annotations(run, workspace=".")[0]
    assert line.startswith("::error file=models/m.py,title=")
