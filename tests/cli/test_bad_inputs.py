"""The bad-input matrix: nothing a model file, a path or an option does makes a gate lie or destroys a
file. Each case is exit 2 with one line (CLI) or an ``LndeployError`` (API); numbered as the defects
of the reliability review (README "Exit codes")."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest

import lndeploy
from lndeploy.errors import BadInputError, LndeployError
from tests.cli.test_errors import assert_one_line_error
from tests.conftest import ln_model_source

LN_MODEL = """
import torch
def build():
    torch.manual_seed(0)
    return torch.nn.LayerNorm(8)
def example_inputs(): return (torch.randn(2, 8),)
"""


def _model(folder, body: str, name: str = "m.py"):
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def _fault_model(where: str, action: str) -> str:
    """A LayerNorm model whose ``where`` (import, build, forward, forward6: its 6th call, mid-comparison)
    runs ``action`` (a statement)."""
    return ln_model_source(
        head="class Boom(BaseException):\n    pass",
        on_call=f"if {where == 'forward'!r} or ({where == 'forward6'!r} and self.calls >= 6):\n    {action}",
        after_class=f"if {where == 'import'!r}:\n    {action}",
        in_build=f"if {where == 'build'!r}:\n    {action}")


@pytest.fixture(scope="module")
def ln_onnx(tmp_path_factory):
    """A small exported LayerNorm model and its model file, made once for the module."""
    folder = tmp_path_factory.mktemp("ln")
    model = _model(folder, LN_MODEL)
    lndeploy.export(str(model), folder / "m.onnx")
    return model, folder / "m.onnx"


# 1. anything a model file does is a model fault: exit 2 naming the file, whatever exit code it asks for
@pytest.mark.parametrize("where", ["import", "build", "forward", "forward6"])
@pytest.mark.parametrize("action", ["sys.exit(0)", "sys.exit(3)", "sys.exit('msg')", "raise Boom('x')"])
def test_model_exit_or_base_exception_is_exit_2(run_cli, tmp_path, ln_onnx, where, action):
    model = _model(tmp_path, _fault_model(where, action))
    result = run_cli("check", model, "--onnx", ln_onnx[1], "--samples", "8")
    assert_one_line_error(result, r"m\.py.*(sys\.exit|Boom)")
    with pytest.raises(BadInputError, match=r"m\.py"):
        lndeploy.check(str(model), onnx=ln_onnx[1], samples=8)


def test_model_exit_0_under_check_is_exit_2_with_a_report_that_says_why(run_cli, tmp_path):
    import json

    model = _model(tmp_path, _fault_model("forward6", "sys.exit(0)"))
    report = tmp_path / "r.json"
    assert_one_line_error(run_cli("check", model, "--samples", "8", "--report", report), r"sys\.exit\(0\)")
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["exit_code"] == 2
    assert "m.py: forward() called sys.exit(0)" in data["error"]


def test_model_exit_under_export_is_exit_2(run_cli, tmp_path):
    model = _model(tmp_path, _fault_model("forward", "sys.exit(0)"))
    assert_one_line_error(run_cli("export", model, "-o", tmp_path / "o.onnx"), r"m\.py: forward\(\) called sys\.exit")
    assert not (tmp_path / "o.onnx").exists()


def test_ctrl_c_raised_in_a_model_is_an_interrupt_not_a_model_fault(run_cli, tmp_path):
    model = _model(tmp_path, _fault_model("build", "raise KeyboardInterrupt"))
    result = run_cli("export", model, "-o", tmp_path / "o.onnx")
    assert result.code == 130 and result.err.strip() == "lndeploy: interrupted", result.err


# 2. outputs never overwrite inputs (nor each other): exit 2 before any work, input byte-identical
def _clash_cases(model, onnx, tmp):
    return [
        ("export", str(model), "-o", str(model)),
        ("check", str(model), "--onnx", str(onnx), "--report", str(onnx)),
        ("check", str(model), "--report", str(model)),
        ("fuse", str(onnx), "-o", str(tmp / "out.onnx"), "--report", str(onnx)),
        ("fuse", str(onnx), "-o", str(tmp / "out.onnx"), "--report", str(tmp / "out.onnx")),
        ("bench", str(onnx), "--json", str(onnx)),
        ("build", str(onnx), "-o", str(onnx)),
        ("build", str(onnx), "-o", str(tmp / "e.engine"), "--model", str(model), "--timing-cache", str(model)),
    ]


@pytest.mark.parametrize("case", range(8))
def test_an_output_onto_an_input_is_exit_2_and_the_input_is_untouched(run_cli, tmp_path, ln_onnx, case):
    model, onnx = (tmp_path / "m.py", tmp_path / "m.onnx")
    model.write_bytes(ln_onnx[0].read_bytes())
    onnx.write_bytes(ln_onnx[1].read_bytes())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert_one_line_error(run_cli(*_clash_cases(model, onnx, tmp_path)[case]), "same file")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_links_are_followed(run_cli, tmp_path, ln_onnx):
    model = tmp_path / "m.py"
    model.write_bytes(ln_onnx[0].read_bytes())
    (tmp_path / "soft.onnx").symlink_to(model)
    (tmp_path / "hard.onnx").hardlink_to(model)
    for name in ("soft.onnx", "hard.onnx"):
        assert_one_line_error(run_cli("export", model, "-o", tmp_path / name), "same file as the input MODEL")
    assert model.read_bytes() == ln_onnx[0].read_bytes()


def test_api_refuses_the_same_clashes(tmp_path, ln_onnx):
    model, onnx = ln_onnx
    with pytest.raises(BadInputError, match="same file"):
        lndeploy.export(str(model), model)
    with pytest.raises(BadInputError, match="same file"):
        lndeploy.check(str(model), onnx=onnx, report=onnx)
    with pytest.raises(BadInputError, match="same file"):
        lndeploy.fuse(str(onnx), tmp_path / "a.onnx", report=tmp_path / "a.onnx")
    with pytest.raises(BadInputError, match="same file"):
        lndeploy.bench(str(onnx), json_path=onnx, budget=0.01)


def test_fuse_in_place_stays_allowed(run_cli, tmp_path, ln_onnx):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(ln_onnx[1].read_bytes())
    result = run_cli("fuse", onnx, "-o", onnx)
    assert result.code == 0, result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


# 3. (write failures: tests/cli/test_write_failures.py)


# 4. a model's own fault during export is exit 2; complex inputs are "not supported"
@pytest.mark.parametrize("body, pattern", [
    ("import torch\nclass M(torch.nn.Module):\n    def forward(self, x): raise RuntimeError('mine')\n"
     "def build(): return M()\ndef example_inputs(): return (torch.randn(2, 8),)\n",
     r"m\.py: forward\(\) on its example inputs raised RuntimeError: mine"),
    ("import torch\ndef build(): return torch.nn.Linear(8, 4)\ndef example_inputs(): return (torch.randn(2, 5),)\n",
     r"m\.py: forward\(\) on its example inputs raised RuntimeError"),
    ("import torch\ndef build(): return torch.nn.LayerNorm(8)\n"
     "def example_inputs(): return (torch.randn(2, 8, dtype=torch.bfloat16),)\n", "bfloat16: give fp32"),
    ("import torch\ndef build(): return torch.nn.Identity()\n"
     "def example_inputs(): return (torch.randn(2, 8, dtype=torch.complex64),)\n",
     "complex-valued inputs are not supported"),
])
def test_model_faults_during_export(run_cli, tmp_path, body, pattern):
    model = _model(tmp_path, body)
    assert_one_line_error(run_cli("export", model, "-o", tmp_path / "o.onnx"), pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py"]
    with pytest.raises(BadInputError):
        lndeploy.export(str(model), tmp_path / "o.onnx")


# 5. numbers are bounded and finite
@pytest.mark.parametrize("args, pattern", [
    (("check", "M", "--seed", "-5"), "--seed"),
    (("check", "M", "--samples", "100000000000"), "--samples"),
    (("check", "M", "--atol", "nan"), "--atol.*not a finite number"),
    (("check", "M", "--rtol", "inf"), "--rtol.*not a finite number"),
    (("bench", "M", "--budget", "nan"), "--budget.*not a finite number"),
    (("bench", "M", "--budget", "inf"), "--budget.*not a finite number"),
    (("export", "M", "-o", "x.onnx", "--opset", "-1"), "--opset"),
])
def test_options_are_validated(run_cli, tmp_path, ln_onnx, args, pattern):
    args = [str(ln_onnx[0]) if a == "M" else str(tmp_path / a) if a == "x.onnx" else a for a in args]
    assert_one_line_error(run_cli(*args), pattern)


def test_api_validates_numbers(ln_onnx):
    model, onnx = ln_onnx
    with pytest.raises(BadInputError, match="seed"):
        lndeploy.check(str(model), onnx=onnx, seed=-5)
    with pytest.raises(BadInputError, match="samples"):
        lndeploy.check(str(model), onnx=onnx, samples=0)
    for budget in (math.nan, math.inf):
        with pytest.raises(BadInputError, match="budget"):
            lndeploy.bench(str(onnx), budget=budget)


# 7. Session.run names the input instead of leaking numpy's or torch's exceptions
@pytest.mark.parametrize("feed, pattern", [
    (5, "got int"),
    ("x", "got str"),
    ({"input": [[1.0] * 8, [1.0] * 7]}, "'input' is not a rectangular numeric array"),
    ("meta", "'input' is a meta tensor"),
    ("sparse", "'input' is a torch.sparse_coo tensor"),
])
def test_session_run_names_the_bad_input(ln_onnx, feed, pattern):
    import torch

    if feed == "meta":
        feed = [torch.empty(2, 8, device="meta")]
    elif feed == "sparse":
        feed = [torch.randn(2, 8).to_sparse()]
    with lndeploy.Session(ln_onnx[1]) as session:
        with pytest.raises(LndeployError, match=pattern):
            session.run(feed)
        assert session.run([np.ones((2, 8), np.float32)])["output"].shape == (2, 8)  # still usable


# 8. contract slips: one line on an error, a garbage engine is bad input like a garbage .onnx
def test_bench_error_is_one_line(run_cli, tmp_path):
    model = _model(tmp_path, _fault_model("forward6", "raise RuntimeError('late')"))
    result = run_cli("bench", model, "--backend", "pytorch,onnxruntime", "--budget", "0.05", "--batch", "1")
    # the set-up lines (exporting, preparing each backend) are not printed before the error
    assert_one_line_error(result, r"m\.py: forward\(\) raised RuntimeError on inputs .* while being timed: late")


def test_inspect_random_bytes_named_engine(run_cli, tmp_path):
    engine = tmp_path / "x.engine"
    engine.write_bytes(bytes(range(256)) * 4)
    assert_one_line_error(run_cli("inspect", engine), "not a TensorRT engine")
