"""``lndeploy fuse`` on the command line: report on stdout and as JSON, exit 1 with nothing written
when the rewrite changes an output, exit 2 with one line on bad input."""

import json

import onnx

from lndeploy.passes.fuse import _testing as T
from tests.cli.test_errors import assert_one_line_error
from tests.conftest import zoo_model


def test_fuse_writes_model_and_report(legacy, run_cli, tmp_path):
    path, _ = legacy(zoo_model("fnn"), 16)
    out, report = tmp_path / "fused.onnx", tmp_path / "fuse.json"
    result = run_cli("fuse", path, "-o", out, "--report", report)
    assert result.code == 0, result.err
    assert "rules: layer_norm 2" in result.out and "verified with ONNX Runtime" in result.out
    assert "ReduceMean" in result.out  # the histogram lines
    data = json.loads(report.read_text())
    assert data["rules"]["layer_norm"] == 2 and data["ln_nodes"] == {"before": 0, "after": 2}
    assert data["ops_before"]["ReduceMean"] == 4 and "ReduceMean" not in data["ops_after"]
    assert data["opset"] == {"before": 16, "after": 17} and data["unconverted"] == []
    assert data["verification"]["passed"] and data["verification"]["provider"] == "CPUExecutionProvider"
    assert sum(n.op_type == "LayerNormalization" for n in onnx.load(out).graph.node) == 2


def offset_model(path):
    """LN of x + 1e4: exact math after fusing, but ONNX Runtime's CPU LayerNormalization takes the
    variance as E[x^2] - E[x]^2 in fp32, which loses ~1e-3 at that offset: a real parity failure."""
    g = T.Graph(16)
    x = g.input("x", ["batch", 64])
    model = g.model(T.layer_norm(g, g.op("Add", x, g.const(1e4)), [-1], how="mul"))
    onnx.save(model, str(path))
    return path


def test_parity_failure_exits_1_and_writes_nothing(run_cli, tmp_path):
    source = offset_model(tmp_path / "offset.onnx")
    out, report = tmp_path / "fused.onnx", tmp_path / "fuse.json"
    result = run_cli("fuse", source, "-o", out, "--report", report)
    assert result.code == 1, (result.out, result.err)
    line = result.err.strip()
    assert line.startswith("lndeploy: error: fuse changed output") and "nothing written" in line
    assert "\n" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["offset.onnx"]


def test_no_verify_writes_anyway(run_cli, tmp_path):
    source = offset_model(tmp_path / "offset.onnx")
    out = tmp_path / "fused.onnx"
    result = run_cli("fuse", source, "-o", out, "--no-verify")
    assert result.code == 0 and "not verified" in result.out
    assert [n.op_type for n in onnx.load(out).graph.node] == ["Add", "LayerNormalization"]


def test_bad_input_exits_2_with_nothing_written(run_cli, tmp_path):
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"\x08\x07garbage" * 10)
    out = tmp_path / "o.onnx"
    assert_one_line_error(run_cli("fuse", garbage, "-o", out), "not a (readable|valid) ONNX")
    assert_one_line_error(run_cli("fuse", tmp_path / "missing.onnx", "-o", out), "not found")
    source = offset_model(tmp_path / "offset.onnx")
    assert_one_line_error(run_cli("fuse", source, "-o", out, "--opset", "12"), "needs opset >= 17")
    assert_one_line_error(run_cli("fuse", source, "-o", tmp_path / "nowhere" / "o.onnx"), "folder does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx", "offset.onnx"]


def test_help_has_an_example(run_cli):
    result = run_cli("fuse", "--help")
    assert result.code == 0 and "Example:" in result.out and "lndeploy fuse legacy.onnx -o" in result.out


def test_python_api_matches_the_contract():
    import lndeploy

    g = T.Graph(14)
    x = g.input("x", [2, 8])
    result = lndeploy.fuse(g.model(T.layer_norm(g, x, [-1])), verify=True)
    assert result.ln_nodes == 1 and result.output is None
    (error,) = result.verification["samples"][0]["max_abs"].values()
    assert 0.0 <= error <= 1e-5
