"""Bad input: exit 2 and one line, no traceback, no partial file; --help is light."""

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO, zoo_model


def assert_one_line_error(result, pattern):
    assert result.code == 2, (result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lndeploy: error:"), result.err
    assert "Traceback" not in result.err
    import re

    assert re.search(pattern, lines[0]), lines[0]


def test_missing_model_file(run_cli, tmp_path):
    out = tmp_path / "o.onnx"
    assert_one_line_error(run_cli("export", tmp_path / "nope.py", "-o", out), "model file not found")
    assert not out.exists()


@pytest.mark.parametrize("body, pattern", [
    ("x = 1\n", "defines no build"),
    ("def build(): raise ValueError('boom')\ndef example_inputs(): return ()\n", r"build\(\) raised ValueError: boom"),
    ("import torch\ndef build(): return torch.nn.Identity()\ndef example_inputs(): return 3\n",
     "example_inputs.* must return a tuple"),
])
def test_bad_model_files(run_cli, tmp_path, body, pattern):
    model = tmp_path / "m.py"
    model.write_text(body)
    out = tmp_path / "o.onnx"
    assert_one_line_error(run_cli("export", model, "-o", out), pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py"]


def test_corrupt_and_truncated_onnx(run_cli, tmp_path):
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"\x08\x07garbage" * 10)
    assert_one_line_error(run_cli("check", zoo_model("fnn"), "--onnx", garbage), "not a (readable|valid) ONNX")
    assert_one_line_error(run_cli("inspect", garbage), "not a (readable|valid) ONNX")


def test_truncated_export(run_cli, tmp_path):
    good = tmp_path / "f.onnx"
    assert run_cli("export", zoo_model("fnn"), "-o", good).code == 0
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert_one_line_error(run_cli("check", zoo_model("fnn"), "--onnx", cut), "ONNX")


def test_artifact_of_another_model_is_refused_at_its_inputs(run_cli, tmp_path):
    """No input name in common: inputs pair by position (foreign exporters rename them), and the
    pair's rank mismatch is the one-line error, before anything runs."""
    other = tmp_path / "rnn.onnx"
    assert run_cli("export", zoo_model("rnn"), "-o", other).code == 0
    assert_one_line_error(run_cli("check", zoo_model("fnn"), "--onnx", other),
                          r"artifact input 'x' \(model input 'input'\) has rank 3 .* the model's example has rank 2")


def test_session_input_name_not_in_model(tmp_path):
    import numpy as np

    from lndeploy import Session
    from lndeploy.errors import BadInputError
    from lndeploy.pipeline import export

    path = tmp_path / "f.onnx"
    export(zoo_model("fnn"), path)
    session = Session(path)
    with pytest.raises(BadInputError, match="input 'wrong' is not in the model"):
        session.run({"wrong": np.zeros((1, 64), np.float32)})


def test_unwritable_output_folder(run_cli, tmp_path):
    assert_one_line_error(run_cli("export", zoo_model("fnn"), "-o", tmp_path / "no" / "o.onnx"), "output folder")


def test_usage_error_is_exit_2(run_cli):
    """Usage errors are one line like every other exit 2 (click's own form is four: usage, hint,
    blank line, error), pointing at the command's --help."""
    assert_one_line_error(run_cli("export"), r"Missing argument 'MODEL'.*'lndeploy export --help'")
    assert_one_line_error(run_cli("check", zoo_model("fnn"), "--backend", "nonsense"),
                          r"'--backend': 'nonsense' is not one of")
    assert_one_line_error(run_cli("frob"), r"No such command 'frob'")
    full = run_cli("--debug", "export")  # --debug keeps click's full usage text
    assert full.code == 2 and full.err.startswith("Usage: lndeploy export"), full.err


def test_help_imports_neither_torch_nor_onnxruntime():
    code = textwrap.dedent("""
        import sys
        from lndeploy.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        heavy = [m for m in ("torch", "onnxruntime", "onnx", "tensorrt_rtx") if m in sys.modules]
        print("HEAVY", heavy)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr
    for sub in ("export", "check", "inspect"):
        assert f"Example:" in subprocess.run([sys.executable, "-m", "lndeploy.cli", sub, "--help"],
                                             capture_output=True, text=True, cwd=REPO, timeout=120).stdout


def test_export_failure_inside_torch_is_one_line(run_cli, tmp_path):
    model = tmp_path / "dd.py"
    model.write_text(textwrap.dedent("""
        import torch
        class M(torch.nn.Module):
            def forward(self, x):
                return x * 2 if x.sum() > 0 else x
        def build(): return M()
        def example_inputs(): return (torch.randn(2, 3),)
    """))
    result = run_cli("export", model, "-o", tmp_path / "o.onnx")
    assert_one_line_error(result, "torch.onnx.export failed: GuardOnDataDependentSymNode")
    assert not (tmp_path / "o.onnx").exists()


def test_negative_tolerance_is_usage_error(run_cli):
    assert_one_line_error(run_cli("check", zoo_model("fnn"), "--atol", "-1"), r"'--atol': -1.0 is not in the range")


def test_written_files_get_the_usual_mode(run_cli, tmp_path):
    import os

    out = tmp_path / "f.onnx"
    assert run_cli("export", zoo_model("fnn"), "-o", out).code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask
