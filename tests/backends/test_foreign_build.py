"""``lndeploy build`` (TensorRT-RTX, on the CPU) and ``inspect`` of engines, on ONNX files lndeploy did
not write. Three builds in all; the others stop before the builder runs."""

from __future__ import annotations

import shutil

import tensorrt_rtx  # noqa: F401 - the dev extra installs it: a broken install fails here, not as skips

from tests.backends import foreign_models as fm
from tests.passes.onnx_node_cases import layer_norm_cases

RTX = ("--runtime", "tensorrt-rtx", "--arch", "sm86", "--no-progress")


def one_line_error(result, code: int) -> str:
    assert result.code == code, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lndeploy: error:"), result.err
    return lines[0]


def test_ln_statistics_tensorrt_cannot_compute_are_exit_3_naming_the_node(tmp_path, run_cli):
    import onnx

    cases = layer_norm_cases()
    case = cases["test_layer_normalization_4d_axis1"]
    path = tmp_path / "case.onnx"
    onnx.save(case.model, str(path))
    line = one_line_error(run_cli("build", path, "-o", tmp_path / "m.engine", *RTX), 3)
    # a valid model this runtime cannot run (its Mean/InvStdDev are graph outputs): not bad input.
    # ONNX's test nodes have no names: the index finds the node ("the model" said nothing)
    assert "does not support" in line and "node #0 (LayerNormalization)" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.onnx"]


def test_declared_but_unused_ln_statistics_are_dropped_and_one_size_fixes_a_dim(tmp_path, run_cli):
    path = fm.layer_norm(tmp_path / "m.onnx", outputs=("y", "mean", "inv_std"))
    engine = tmp_path / "m.engine"
    result = run_cli("build", path, "-o", engine, "--shapes", "x:4x16", *RTX)  # trtexec's --shapes form
    assert result.code == 0, result.err
    assert "Mean/InvStdDev outputs that nothing reads: dropped" in result.out
    assert "profile: batch 4..4 (opt 4)" in result.out
    assert "1 x NORMALIZATION (float32->float32)" in result.out

    # an engine without its sidecar (as trtexec writes it) is still inspected, from its own header
    bare = tmp_path / "bare.engine"
    shutil.copy(engine, bare)
    result = run_cli("inspect", bare)
    assert result.code == 0, result.err  # was exit 2: "not built by lndeploy build"
    assert 'header: "TensorRT-RTX"' in result.out and "no sidecar bare.engine.json" in result.out


def test_a_failed_build_names_the_profile_it_used(tmp_path, run_cli):
    path = fm.fixed_reshape(tmp_path / "m.onnx")
    line = one_line_error(run_cli("build", path, "-o", tmp_path / "m.engine", *RTX), 2)
    assert "[profile used: batch 1..8 (opt 8); set sizes with --shapes" in line, line
    result = run_cli("build", path, "-o", tmp_path / "m.engine", "--shapes", "batch:2", *RTX)
    assert result.code == 0, result.err


def test_an_empty_arch_is_refused_not_defaulted(tmp_path, run_cli):
    path = fm.layer_norm(tmp_path / "m.onnx")
    line = one_line_error(run_cli("build", path, "-o", tmp_path / "m.engine", "--runtime", "tensorrt-rtx",
                                  "--arch", ""), 2)
    assert "--arch is empty" in line


def test_a_sequence_input_is_exit_3_before_the_parser(tmp_path, run_cli):
    path = fm.sequence_input(tmp_path / "seq.onnx")
    line = one_line_error(run_cli("build", path, "-o", tmp_path / "m.engine", *RTX), 3)
    # the parser printed its own line first and asserted: two lines, and the reason was "the model"
    assert "TensorRT takes tensor inputs only; input 's'" in line and "is a sequence" in line, line


def test_layer_norm_written_as_primitive_ops_builds_with_a_fuse_hint(tmp_path, run_cli):
    """ONNX's own expanded LN (ReduceMean/Sub/Pow/Sqrt/Div): TensorRT builds it as many layers and
    no NORMALIZATION layer; build says `lndeploy fuse` would make each one node."""
    import onnx

    cases = layer_norm_cases()
    path = tmp_path / "expanded.onnx"
    onnx.save(cases["test_layer_normalization_2d_axis1_expanded"].model, str(path))
    result = run_cli("build", path, "-o", tmp_path / "m.engine", *RTX)
    assert result.code == 0, result.err
    assert "LayerNorm layers: 0 x none" in result.out
    assert "note: " in result.out and "`lndeploy fuse` makes each one node" in result.out
