"""Runtime discovery, the TensorRT-RTX plugin symlink, sidecar checks, and running engines.

Exit codes per SPEC: a missing runtime or GPU is exit 3 with one line; what cannot run here is
skipped with the reason, never faked.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import lndeploy
from lndeploy import trt_env
from lndeploy.backends.tensorrt import runtime as rtmod
from lndeploy.backends.tensorrt import sidecar
from lndeploy.errors import BadInputError, UnavailableError
from tests.conftest import zoo_model

HAS_FULL_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
FULL_TRT_REASON = "full TensorRT is installed here, so it is not missing"


def _gpu():
    return trt_env.cuda_gpu()


@pytest.fixture(scope="module")
def fnn_engine(tmp_path_factory, zoo_export):
    """A small RTX engine (fnn, sm86) and the ONNX it came from."""
    if not HAS_RTX:
        pytest.skip("TensorRT-RTX is not installed (pip install tensorrt-rtx)")
    from lndeploy.backends.tensorrt import build_engine

    onnx_path, engine = Path(zoo_export("fnn").path), tmp_path_factory.mktemp("trt-run") / "fnn.engine"
    build_engine(onnx_path, engine, runtime="tensorrt-rtx", arch="sm86", progress=False)
    return onnx_path, engine


@pytest.mark.skipif(HAS_FULL_TRT, reason=FULL_TRT_REASON)
def test_build_with_missing_full_tensorrt_exits_3_in_one_line(tmp_path, run_cli):
    from onnx import TensorProto, helper

    from lndeploy.onnxfile import save_model

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx_path = tmp_path.parent / f"{tmp_path.name}-relu.onnx"
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), onnx_path)
    out = tmp_path / "x.engine"
    done = run_cli("build", onnx_path, "-o", out, "--runtime", "tensorrt")
    assert done.code == 3
    assert len(done.err.strip().splitlines()) == 1 and "Traceback" not in done.err
    assert "pip install tensorrt --extra-index-url https://pypi.nvidia.com" in done.err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UnavailableError) as info:
        rtmod.load("tensorrt")
    assert info.value.exit_code == 3


def test_runtime_names():
    with pytest.raises(BadInputError, match="unknown runtime 'trt'"):
        rtmod.resolve_name("trt")
    if HAS_FULL_TRT or HAS_RTX:
        assert rtmod.resolve_name(None) == ("tensorrt" if HAS_FULL_TRT else "tensorrt-rtx")
    if HAS_RTX:
        rt = rtmod.load("tensorrt-rtx")
        assert rt.is_rtx and rt.version == rt.trt.__version__ and rt.label == "TensorRT-RTX"


def test_rtx_symlink_is_made_once_and_atomically(tmp_path):
    (tmp_path / trt_env.RTX_LIB).write_bytes(b"\x7fELF")
    link = trt_env.ensure_rtx_plugin_symlink(tmp_path)
    assert link.is_symlink() and os.readlink(link) == trt_env.RTX_LIB
    assert trt_env.ensure_rtx_plugin_symlink(tmp_path) == link  # already there: nothing to do
    assert sorted(p.name for p in tmp_path.iterdir()) == [trt_env.RTX_LINK, trt_env.RTX_LIB]  # no temp left


def test_rtx_symlink_errors_say_how_to_fix(tmp_path):
    with pytest.raises(UnavailableError, match="has no libtensorrt_rtx.so.1"):
        trt_env.ensure_rtx_plugin_symlink(tmp_path)
    os.symlink("nowhere.so.1", tmp_path / trt_env.RTX_LINK)
    with pytest.raises(UnavailableError, match="broken symlink; replace it: ln -sf"):
        trt_env.ensure_rtx_plugin_symlink(tmp_path)


@contextlib.contextmanager
def _unprivileged():
    """Root may write into any folder: as root, act with user nobody's effective ids meanwhile."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_rtx_symlink_in_unwritable_folder():
    # a folder of its own under /tmp: nobody cannot pass through pytest's tmp_path parents (mode 700)
    folder = Path(tempfile.mkdtemp(prefix="lndeploy-rtx-libs-"))
    try:
        (folder / trt_env.RTX_LIB).write_bytes(b"\x7fELF")
        folder.chmod(0o555)
        with _unprivileged():
            with pytest.raises(UnavailableError, match="create it once as the folder's owner: ln -s") as info:
                trt_env.ensure_rtx_plugin_symlink(folder)
        assert "Permission denied" in str(info.value)
        assert [p.name for p in folder.iterdir()] == [trt_env.RTX_LIB]  # no link, no temp left
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


@pytest.mark.skipif(not HAS_RTX, reason="TensorRT-RTX is not installed (pip install tensorrt-rtx)")
def test_real_rtx_libs_folder_has_the_link_and_registering_plugins_writes_nothing_there():
    """The set-up (make setup) makes the link once; registering the plugin then finds it and leaves
    site-packages as it was (a test that wrote there changed the installation it ran in)."""
    from lndeploy.plugins.layernorm import trt_plugin

    folder = trt_env.rtx_libs_folder()
    link = folder / trt_env.RTX_LINK
    assert link.exists() and os.path.realpath(link).endswith(trt_env.RTX_LIB), "run make setup"
    before = sorted((p.name, p.lstat().st_mtime_ns) for p in folder.iterdir())
    rt = rtmod.load("tensorrt-rtx")
    assert trt_plugin.register(rt) == "python-creator"
    assert sorted((p.name, p.lstat().st_mtime_ns) for p in folder.iterdir()) == before


def test_sidecar_is_complete_and_checked(fnn_engine):
    onnx_path, engine = fnn_engine
    facts = sidecar.read(engine)
    assert facts["source_onnx"]["sha256"] == __import__("hashlib").sha256(onnx_path.read_bytes()).hexdigest()
    assert facts["dims"] == {"batch": [1, 8, 8]} and facts["inputs"] == [{"name": "input", "dims": ["batch", 64]}]
    rt = rtmod.load("tensorrt-rtx")
    sidecar.check_compatible(facts, rt, {"name": "RTX A6000", "sm": 86}, engine)
    with pytest.raises(UnavailableError, match=r"built for sm86, this GPU \(RTX 4090\) is sm89; .* --arch sm89"):
        sidecar.check_compatible(facts, rt, {"name": "RTX 4090", "sm": 89}, engine)
    older = rtmod.Runtime(rt.name, rt.trt, "1.0.0.0")
    with pytest.raises(UnavailableError, match="built with tensorrt-rtx 1.7.*this machine has tensorrt-rtx 1.0.0.0"):
        sidecar.check_compatible(facts, older, {"name": "RTX A6000", "sm": 86}, engine)


def test_sidecar_read_errors(tmp_path):
    engine = tmp_path / "m.engine"
    assert sidecar.read(engine) is None
    sidecar.sidecar_path(engine).write_text("{not json")
    with pytest.raises(BadInputError, match="not readable JSON"):
        sidecar.read(engine)
    sidecar.sidecar_path(engine).write_text(json.dumps({"format": "other"}))
    with pytest.raises(BadInputError, match="not an lndeploy engine sidecar"):
        sidecar.read(engine)


@pytest.mark.skipif(_gpu() is not None, reason="a GPU is present: the engine can run here")
def test_running_an_engine_without_gpu_exits_3(fnn_engine, run_cli):
    _, engine = fnn_engine
    with pytest.raises(UnavailableError, match="needs an NVIDIA GPU") as info:
        lndeploy.Session(engine)
    assert info.value.exit_code == 3
    report = engine.parent / "exit3-report.json"
    done = run_cli("check", zoo_model("fnn"), "--engine", engine, "--report", report)
    assert done.code == 3 and len(done.err.strip().splitlines()) == 1 and "needs an NVIDIA GPU" in done.err
    data = json.loads(report.read_text())  # a CI gate reads why it could not run
    assert data["passed"] is False and data["exit_code"] == 3 and "needs an NVIDIA GPU" in data["error"]
    assert data["artifact"]["path"] == str(engine) and data["schema"].startswith("lndeploy.check/")


def test_truncated_engine_is_bad_input_on_any_machine(fnn_engine, tmp_path, run_cli):
    """The sidecar's size check needs no GPU, so a replaced or truncated engine is exit 2 here too
    (it was exit 3, 'needs an NVIDIA GPU', because the GPU was asked for first)."""
    _, engine = fnn_engine
    cut = tmp_path / "cut.engine"
    cut.write_bytes(engine.read_bytes()[:1000])
    shutil.copy(str(engine) + ".json", str(cut) + ".json")
    done = run_cli("check", zoo_model("fnn"), "--engine", cut)
    assert done.code == 2 and len(done.err.strip().splitlines()) == 1, done.err
    assert "is 1000 bytes, its sidecar says" in done.err and "truncated" in done.err


def test_missing_engine_is_bad_input(tmp_path):
    from lndeploy.backends.tensorrt import TrtSession

    with pytest.raises(BadInputError, match="engine not found"):
        TrtSession(tmp_path / "none.engine")


def _rtx_runs_here() -> str | None:
    gpu = _gpu()
    if gpu is None:
        return "no CUDA GPU here"
    if not HAS_RTX:
        return "TensorRT-RTX is not installed"
    supported = [k.lower() for k in rtmod.load("tensorrt-rtx").trt.ComputeCapability.__members__ if k.startswith("SM")]
    return None if f"sm{gpu['sm']}" in supported else f"TensorRT-RTX does not run on sm{gpu['sm']}"


@pytest.mark.skipif(_rtx_runs_here() is not None, reason=str(_rtx_runs_here()))
@pytest.mark.parametrize("ln", ["native", "plugin"])
def test_gpu_rtx_engine_matches_onnxruntime(tmp_path, ln):
    from lndeploy.backends.tensorrt import build_engine
    from lndeploy.pipeline import export

    onnx_path, engine = tmp_path / "rnn.onnx", tmp_path / "rnn.engine"
    export(zoo_model("rnn"), onnx_path, ln=ln, verify=False)
    build_engine(onnx_path, engine, runtime="tensorrt-rtx", arch="current", progress=False)
    x = np.random.default_rng(0).standard_normal((3, 7, 16)).astype(np.float32)
    got = lndeploy.Session(engine).run({"x": x})
    want = lndeploy.Session(onnx_path).run({"x": x})
    for name in want:
        assert np.abs(got[name] - want[name]).max() <= 1e-4, name
