"""check --config: a matrix in one process, its exit code, its JUnit/summary/report, and a bad config."""

import json
import re
import time

import junitparser
import onnx
import pytest
from onnx import numpy_helper

from lndeploy.checker import matrix_config
from lndeploy.errors import BadInputError
from tests.conftest import REPO, ZOO, zoo_model


def _config(tmp_path, text: str):
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return path


def _cases(junit):
    return {(case.classname, case.name): case for suite in junitparser.JUnitXml.fromfile(str(junit)) for case in suite}


def test_two_cells_share_one_artifact_and_pass(run_cli, tmp_path, zoo_export):
    config = _config(tmp_path, f'[[model]]\npath = "{zoo_model("fnn")}"\nonnx = "{zoo_export("fnn").path}"\n'
                               f'backends = ["onnxruntime", "onnx-reference"]\n')
    result = run_cli("check", "--config", config, "--junit", tmp_path / "j.xml", "--summary", tmp_path / "s.md",
                     "--report", tmp_path / "r.json", "--plots", tmp_path / "plots")
    assert result.code == 0, result.out + result.err
    for cell in ("fnn.fp32.native.onnxruntime", "fnn.fp32.native.onnx-reference"):
        assert list((tmp_path / "plots" / cell).glob("*.png")), cell
    assert set(_cases(tmp_path / "j.xml")) == {("fnn.fp32.native.onnxruntime", "output"),
                                                ("fnn.fp32.native.onnx-reference", "output")}
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["schema"] == "lndeploy.matrix/1" and report["counts"]["passed"] == 2
    cells = {c["backend"]: c["report"] for c in report["cells"]}
    assert cells["onnx-reference"]["provider"] != cells["onnxruntime"]["provider"]
    assert all(r["outputs"]["output"]["max_abs"] <= 1e-4 for r in cells.values())
    assert "2 cells: 2 passed" in result.out


def _perturb(source, target):
    model = onnx.load(source)
    gemm = next(n for n in model.graph.node if n.op_type in ("Gemm", "MatMul"))
    weight = next(i for i in model.graph.initializer if i.name in gemm.input)
    array = numpy_helper.to_array(weight).copy()
    array.flat[0] += 0.5  # one weight of the first layer
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    onnx.save(model, target)
    return target


def test_one_perturbed_artifact_fails_exactly_its_case(run_cli, tmp_path, zoo_export, monkeypatch):
    bad = _perturb(zoo_export("fnn").path, tmp_path / "fnn-bad.onnx")
    config = _config(tmp_path, f'[defaults]\nbackends = ["onnxruntime", "onnx-reference"]\n\n'
                               f'[[model]]\npath = "{zoo_model("fnn")}"\n\n'
                               f'[[model]]\nname = "fnn-perturbed"\npath = "{zoo_model("fnn")}"\nonnx = "{bad}"\n'
                               f'backends = ["onnxruntime"]\n')
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = run_cli("check", "--config", config, "--junit", tmp_path / "j.xml", "--report", tmp_path / "r.json")
    assert result.code == 1, result.out + result.err
    cases = _cases(tmp_path / "j.xml")
    assert len(cases) == 3
    failed = {key: case for key, case in cases.items() if not case.is_passed}
    assert list(failed) == [("fnn-perturbed.fp32.native.onnxruntime", "output")]
    message = failed[("fnn-perturbed.fp32.native.onnxruntime", "output")].result[0].message
    # names the output, its worst element and the first diverging layer
    assert "output 'output'" in message and "worst at [" in message and "vs PyTorch" in message
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["exports"]) == 1  # fnn fp32 native exported once for its two backends
    first = report["cells"][2]["report"]["first_divergence"]  # the localisation of the failed check
    assert f"first diverging layer {first['module']!r} (node {first['node']!r})" in message
    assert "| fnn-perturbed | fp32 | native | onnxruntime | ❌ failed |" in step.read_text()
    annotation = [line for line in result.out.splitlines() if line.startswith("::error ")]
    assert len(annotation) == 1 and "fnn-perturbed" in annotation[0]
    assert annotation[0].startswith(("::error file=models/fnn.py,", f"::error file={zoo_model('fnn')},"))


@pytest.mark.parametrize("text, message", [
    ('[[model]]\npath = "m.py"\nprecision = ["fp16"]\n', "model[0] (m): unknown key 'precision'"),
    ('[[model]]\npath = "m.py"\nprecisions = ["fp8"]\n', "key 'precisions' must be a list of fp32|fp16|bf16"),
    ('[[model]]\npath = "m.py"\natol = { fp64 = 1 }\n', "key 'atol' must be a number"),
    ('[[model]]\npath = "m.py"\nbudget = "loose"\n', "key 'budget' must be a list of fixed|auto"),
    ('[[model]]\npath = "m.py"\nonnx = "m.onnx"\nln = ["plugin"]\n', "key 'ln' contradicts key 'onnx'"),
    ('[[model]]\nname = "x"\n', "key 'path' (the model file) is required"),
    ('[[model]]\npath = "a/m.py"\n[[model]]\npath = "b/m.py"\n', "two models are named 'm'"),
    ('[model]\npath = "m.py"\n', "key 'model' must be one or more [[model]] tables"),
    ('models = 1\n', "unknown top-level key 'models'"),
    ('[[model]\n', "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path, text, message):
    with pytest.raises(BadInputError, match=re.escape(message)):
        matrix_config.load(_config(tmp_path, text))


def test_bad_config_and_mixed_options_exit_2_in_one_line(run_cli, tmp_path):
    config = _config(tmp_path, '[[model]]\npath = "m.py"\nbackend = "onnxruntime"\n')
    result = run_cli("check", "--config", config)
    assert result.code == 2 and result.err.count("\n") == 1 and "unknown key 'backend'" in result.err
    result = run_cli("check", "--config", config, "--precision", "fp16")
    assert result.code == 2 and "--precision does not go with --config" in result.err
    result = run_cli("check", "--config", config, "--junit", config)
    assert result.code == 2 and "is the same file as the input --config" in result.err


def test_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    entries = matrix_config.load(_config(tmp_path, '[defaults]\nprecisions = ["fp32", "fp16"]\n\n'
                                                   '[[model]]\npath = "sub/m.py:factory"\ninputs = "data.npz"\n'
                                                   'atol = { fp16 = 0.05 }\nbudget = "fixed"\n'
                                                   'plugin_impl = "kernel"\n\n[[model]]\npath = "pkg.module"\n'))
    assert entries[0].path == f"{tmp_path}/sub/m.py:factory" and entries[0].inputs == f"{tmp_path}/data.npz"
    assert entries[0].tolerance("fp16") == (0.05, None) and entries[0].tolerance("fp32") == (None, None)
    assert (entries[0].budget, entries[0].plugin_impl, entries[1].budget) == ("fixed", "kernel", None)
    assert entries[1].path == "pkg.module" and entries[1].precisions == ["fp32", "fp16"]


@pytest.mark.slow
def test_zoo_matrix_24_cells_in_one_process(run_cli, tmp_path):
    """The example config: 6 zoo models x fp32/fp16 x native/plugin, exit 0, one case per cell and output."""
    start = time.perf_counter()
    result = run_cli("check", "--config", REPO / "examples" / "zoo.toml", "--junit", tmp_path / "j.xml",
                     "--summary", tmp_path / "s.md", "--report", tmp_path / "r.json")
    seconds = time.perf_counter() - start
    assert result.code == 0, result.out + result.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"passed": 24, "failed": 0, "error": 0, "skipped": 0}
    assert len(report["exports"]) == 24  # one per (model, precision, LN form), each reused by its backend
    outputs = sum(len(c["report"]["outputs"]) for c in report["cells"])
    cases = _cases(tmp_path / "j.xml")
    assert len(cases) == outputs and {key[0].split(".")[0] for key in cases} == set(ZOO)
    assert all(case.is_passed for case in cases.values())
    print(f"24-cell zoo matrix: {seconds:.1f} s")


def test_a_single_check_writes_a_one_cell_junit_and_summary(run_cli, tmp_path, zoo_export):
    result = run_cli("check", zoo_model("fnn"), "--onnx", zoo_export("fnn").path, "--junit", tmp_path / "j.xml",
                     "--summary", tmp_path / "s.md")
    assert result.code == 0, result.err
    assert list(_cases(tmp_path / "j.xml")) == [("fnn.fp32.native.onnxruntime", "output")]
    assert "| fnn | fp32 | native | onnxruntime | ✅ passed | output |" in (tmp_path / "s.md").read_text()


def test_export_reuses_a_trace_without_running_torchs_exporter_or_changing_it(tmp_path, monkeypatch):
    from lndeploy import modelfile
    from lndeploy.exporter import torch_export, trace
    from lndeploy.pipeline import export

    spec = modelfile.load(zoo_model("fnn"))
    traced = trace(spec)
    before = traced.SerializeToString()

    def refuse(*args, **kwargs):
        raise AssertionError("torch's exporter ran again")

    monkeypatch.setattr(torch_export, "run_exporter", refuse)
    result = export(spec, tmp_path / "fnn.onnx", ln="plugin", precision="fp16", traced=traced)
    assert result.verification and result.precision == "fp16"
    assert any(n.op_type == "LndeployLayerNorm" for n in onnx.load(result.path).graph.node)
    assert traced.SerializeToString() == before  # the passes worked on a copy
