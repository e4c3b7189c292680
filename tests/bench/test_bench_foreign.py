"""``lndeploy bench`` on ONNX files lndeploy did not write."""

import numpy as np
import pytest

from lndeploy.benchmark import bench
from lndeploy.errors import UnavailableError
from tests.backends import foreign_models as fm


def test_a_backend_that_cannot_load_the_graph_is_skipped_not_fatal(tmp_path):
    """ORT on the CPU has no bf16 MatMul: onnxruntime is skipped with its reason, the other backends
    (TensorRT, where a GPU is) still run; here none can, so the one error lists every reason."""
    from onnx import TensorProto

    path = fm.matmul(tmp_path / "bf16.onnx", TensorProto.BFLOAT16)
    try:
        result = bench(str(path), batches=(2,), threads=1, budget=0.05)
    except UnavailableError as err:  # was: ORT's error alone, before any other backend was tried
        assert str(err).startswith("no backend can run here:"), err
        assert "onnxruntime: ONNX Runtime here has no kernel" in str(err) and "tensorrt:" in str(err)
        assert "--backend onnx-reference" not in str(err)  # bench has no such backend
        return
    skipped = {b["name"]: b for b in result.data["backends"] if b["status"] != "ran"}
    assert "onnxruntime" in skipped and result.results
    with pytest.raises(UnavailableError, match="backend onnxruntime cannot run: ONNX Runtime here has no kernel"):
        bench(str(path), backends=["onnxruntime"], budget=0.05)


def test_bf16_inputs_and_outputs_go_through_onnx_runtime(tmp_path):
    """ORT runs a bf16 LayerNormalization on the CPU, but its numpy bridge refuses bf16 arrays
    (was exit 2: "Numpy_type 256 can't be converted to MLDataType")."""
    from onnx import TensorProto

    path = fm.layer_norm(tmp_path / "bf16.onnx", dtype=TensorProto.BFLOAT16)
    result = bench(str(path), backends=["onnxruntime"], batches=(3,), threads=1, budget=0.05)
    (row,) = result.results
    assert row["backend"] == "onnxruntime" and row["shapes"] == {"x": [3, 16]}

    import lndeploy

    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    got = lndeploy.Session(path).run(x)["y"]
    want = lndeploy.Session(path, backend="onnx-reference").run(x)["y"]
    assert got.dtype.name == "bfloat16" and got.shape == (3, 16)
    assert np.max(np.abs(got.astype(np.float32) - want.astype(np.float32))) <= 0.05  # 2 bf16 ulps at |y| < 4
