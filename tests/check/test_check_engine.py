"""``check --engine``: full-TensorRT engines run through Polygraphy's TrtRunner. Needs full TensorRT
and a GPU, so here it skips with that reason; the exit-3 path without them is tested in
tests/backends/test_tensorrt_runtime.py."""

import importlib.util

import pytest

from tests.conftest import zoo_model


def _why_not() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "full TensorRT is not installed (pip install tensorrt --extra-index-url https://pypi.nvidia.com)"
    from lndeploy.backends.tensorrt import runtime

    if runtime.cuda_gpu() is None:
        return "no CUDA GPU here"
    return None


@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
@pytest.mark.parametrize("ln", ["native", "plugin"])
def test_engine_check_runs_through_polygraphy_trt_runner(tmp_path, ln):
    from lndeploy.backends.tensorrt import build_engine
    from lndeploy.checker import check
    from lndeploy.checker.runners import artifact_runner
    from lndeploy.pipeline import export
    from lndeploy.session import Session

    onnx_path, engine = tmp_path / "rnn.onnx", tmp_path / "rnn.engine"
    export(zoo_model("rnn"), onnx_path, ln=ln)
    build_engine(onnx_path, engine, runtime="tensorrt", progress=False)
    session = Session(engine)
    assert type(artifact_runner(session, "tensorrt")).__name__ == "TrtRunner"
    result = check(zoo_model("rnn"), engine=str(engine))
    assert result.passed, result.summary()
    assert result.provider.startswith("TensorRT")
