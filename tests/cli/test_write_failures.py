"""A write that cannot happen is the user's to fix: exit 2, one line, no file left (README "Exit
codes"). Read-only folder, full disk, names at and over the 255-byte limit, a folder in the way, temp
files of a killed process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lndeploy.errors import BadInputError
from lndeploy.fileio import atomic_path, write_bytes_atomic
from tests.cli.test_errors import assert_one_line_error
from tests.conftest import REPO

PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1  # linux/prctl.h, linux/capability.h


def _onnx(path: Path, floats: int = 16) -> Path:
    """A valid ONNX file of about ``4 * floats`` bytes (an Identity over one initializer)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [floats])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [floats])],
                              [numpy_helper.from_array(np.arange(floats, dtype=np.float32), "w")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _without_dac_override():
    """In the child, before exec: drop CAP_DAC_OVERRIDE from the bounding set (prctl
    PR_CAPBSET_DROP), so root obeys a folder's permission bits as any user does."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)")


def test_read_only_folder(tmp_path):
    """Root writes into a 0555 folder anyway; a user does not. Run as root, the CLI runs in a child
    with the capability that lets root ignore permission bits dropped."""
    source = _onnx(tmp_path / "in.onnx")
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o555)
    try:
        done = subprocess.run([sys.executable, "-m", "lndeploy.cli", "fuse", str(source), "-o", str(target / "o.onnx")],
                              capture_output=True, text=True, cwd=REPO, timeout=120,
                              preexec_fn=_without_dac_override if os.geteuid() == 0 else None)
    finally:
        target.chmod(0o755)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not writable" in lines[0], done.stderr
    assert list(target.iterdir()) == []


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs: a disk that fills up. Needs root with CAP_SYS_ADMIN (a container may refuse)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up here: {done.stderr.strip() or done.returncode}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk(run_cli, tmp_path, small_tmpfs):
    big = _onnx(tmp_path / "big.onnx", floats=40_000)  # 160 kB, over the 64 KiB disk
    assert_one_line_error(run_cli("fuse", big, "-o", small_tmpfs / "o.onnx"), "cannot write .*o.onnx: the disk is full")
    assert list(small_tmpfs.iterdir()) == []
    with pytest.raises(BadInputError, match="the disk is full"):
        write_bytes_atomic(small_tmpfs / "r.json", b"0" * 100_000)
    assert list(small_tmpfs.iterdir()) == []


def test_read_only_file_system(run_cli, tmp_path, small_tmpfs):
    """Even root cannot write a read-only mount: caught before the work, as for a read-only folder."""
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    assert_one_line_error(run_cli("fuse", _onnx(tmp_path / "in.onnx"), "-o", small_tmpfs / "o.onnx"), "not writable")


def test_a_legal_long_name_is_written(run_cli, tmp_path):
    """245 bytes is a legal name; the temp file beside it is cut to fit the 255-byte limit."""
    source = _onnx(tmp_path / "in.onnx")
    name = "n" * 240 + ".onnx"
    result = run_cli("fuse", source, "-o", tmp_path / name)
    assert result.code == 0, result.err
    assert (tmp_path / name).is_file() and _leftovers(tmp_path) == []


def test_a_name_over_the_limit_is_exit_2_before_the_work(run_cli, tmp_path):
    source = _onnx(tmp_path / "in.onnx")
    result = run_cli("fuse", source, "-o", tmp_path / ("n" * 300 + ".onnx"))
    assert_one_line_error(result, "over the file system's limit")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx"]


def test_a_folder_where_the_sidecar_goes(run_cli, tmp_path):
    source = _onnx(tmp_path / "in.onnx")
    (tmp_path / "e.engine.json").mkdir()
    assert_one_line_error(run_cli("build", source, "-o", tmp_path / "e.engine"), "the sidecar: output .* is a folder")
    (tmp_path / "r.json").mkdir()
    assert_one_line_error(run_cli("fuse", source, "-o", tmp_path / "o.onnx", "--report", tmp_path / "r.json"), "r.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.engine.json", "in.onnx", "r.json"]


def test_a_write_error_after_the_checks_is_one_line_and_leaves_nothing(tmp_path):
    """The folder is removed between the checks and the rename: an OSError inside becomes BadInputError."""
    folder = tmp_path / "gone"
    folder.mkdir()
    with pytest.raises(BadInputError, match=r"cannot write .*x\.bin"):
        with atomic_path(folder / "x.bin") as tmp:
            tmp.write_bytes(b"1")
            tmp.unlink()
            folder.rmdir()
    assert not folder.exists()


def test_temp_files_of_a_killed_process_are_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".r.json.lndeploy-{pid}-abcd1234.tmp"
    stale.write_bytes(b"half")
    mine = tmp_path / f".r.json.lndeploy-{os.getpid()}-abcd1234.tmp"  # a live writer's: kept
    mine.write_bytes(b"busy")
    other = tmp_path / f".other.json.lndeploy-{pid}-abcd1234.tmp"  # another target's: not this write's to sweep
    other.write_bytes(b"x")
    write_bytes_atomic(tmp_path / "r.json", b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["r.json", mine.name, other.name])
