"""Ctrl-C is exit 130 and SIGTERM 143 at every moment of export, fuse and build, with one line on
stderr and no temp file or partial output left (README "Exit codes"). Each test kills a real
process and looks at the folder."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lndeploy.fileio import atomic_path
from tests.conftest import REPO, ln_model_source

CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
LINES = {signal.SIGINT: "lndeploy: interrupted", signal.SIGTERM: "lndeploy: terminated"}

# a model that, at one moment of the export, says so (a marker file) and waits to be killed
STALLING_MODEL = ln_model_source(
    head="""
        MOMENT, MARKER = {moment!r}, pathlib.Path({marker!r})
        def stall(now):
            if now == MOMENT:
                MARKER.touch()
                time.sleep(60)
        stall("import")
    """,
    # torch's exporter traces forward (its 2nd call); verification runs it after the export
    on_call='stall("exporter" if torch.compiler.is_exporting() else "verify" if self.calls > 1 else "first run")')


def _start(args, marker: Path) -> subprocess.Popen:
    """The CLI in a child that touches ``marker`` once lndeploy's main has set its SIGTERM handler, so
    that a kill lands inside lndeploy, not in the interpreter's start-up (where no program can act)."""
    code = textwrap.dedent(f"""
        import pathlib, signal, threading, time, lndeploy.cli
        def mark():
            while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                time.sleep(0.001)
            pathlib.Path({str(marker)!r}).touch()
        threading.Thread(target=mark, daemon=True).start()
        lndeploy.cli.main({[str(a) for a in args]!r})
    """)
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, limit: float = 120) -> None:
    end = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path.name} never appeared"
        time.sleep(0.02)


def _kill_and_look(proc, sig, folder: Path, produced: list[str]) -> int:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    if proc.returncode in (0, -sig):  # it finished (-sig: while the interpreter exits): complete outputs
        assert all((folder / name).is_file() for name in produced), (proc.returncode, err)
    else:
        assert proc.returncode == CODES[sig], (proc.returncode, err)
        assert err.strip().splitlines()[-1] == LINES[sig] and "Traceback" not in err, err
        assert not any((folder / name).exists() for name in produced)
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []
    return proc.returncode


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("moment", ["import", "first run", "exporter", "verify"])
def test_export_killed_at_each_moment(tmp_path, sig, moment):
    marker = tmp_path / "marker"
    model = tmp_path / "m.py"
    model.write_text(STALLING_MODEL.format(moment=moment, marker=str(marker)))
    out = tmp_path / "out"
    out.mkdir()
    proc = _start(["export", model, "-o", out / "m.onnx"], tmp_path / "started")
    _wait_for(marker, proc)
    _kill_and_look(proc, sig, out, ["m.onnx"])
    assert proc.returncode == CODES[sig]  # the model waits: the signal always lands


def test_sigterm_while_a_model_file_loads_is_143(tmp_path):
    """The quick one of the above (kept out of the slow set): no torch export, SIGTERM in the import."""
    marker = tmp_path / "marker"
    model = tmp_path / "m.py"
    model.write_text(textwrap.dedent(f"""
        import pathlib, time
        pathlib.Path({str(marker)!r}).touch()
        time.sleep(60)
    """))
    proc = _start(["export", model, "-o", tmp_path / "m.onnx"], tmp_path / "started")
    _wait_for(marker, proc)
    _kill_and_look(proc, signal.SIGTERM, tmp_path, ["m.onnx"])
    assert proc.returncode == 143


def _onnx_with_layer_norm(path: Path) -> Path:
    """A primitive-op LayerNorm over a 1 MB weight: fuse has something to rewrite, verify and write."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("ReduceMean", ["h"], ["mu"], axes=[-1]),
             helper.make_node("Sub", ["h", "mu"], ["d"]), helper.make_node("Mul", ["d", "d"], ["sq"]),
             helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["d", "sd"], ["y"])]
    w = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 512])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 512])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32(1e-5), "eps")])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("command", ["fuse", "build"])
def test_fuse_and_build_killed_at_several_moments(tmp_path, sig, command):
    source = _onnx_with_layer_norm(tmp_path / "in.onnx")
    codes = []
    for delay in (0.0, 0.3, 0.8, 1.5, 3.0):
        out = tmp_path / f"out-{delay}"
        out.mkdir()
        target = out / ("o.onnx" if command == "fuse" else "o.engine")
        args = [command, source, "-o", target] + (["--runtime", "tensorrt-rtx"] if command == "build" else [])
        started = out / "started"
        proc = _start(args, started)
        _wait_for(started, proc)
        time.sleep(delay)
        produced = ["o.onnx"] if command == "fuse" else ["o.engine", "o.engine.json"]
        codes.append(_kill_and_look(proc, sig, out, produced))
        started.unlink()
    assert CODES[sig] in codes, codes  # at least one kill landed before the command finished


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_write_leaves_no_temp_file(tmp_path, interrupt):
    with pytest.raises(interrupt):
        with atomic_path(tmp_path / "o.onnx") as tmp:
            tmp.write_bytes(b"half")
            raise interrupt()
    assert list(tmp_path.iterdir()) == []
