"""lndeploy.inputs: the signature of an ONNX graph's inputs, as check, bench and build read it."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from lndeploy import inputs

from lndeploy.backends.tensorrt.shapes import onnx_inputs
from lndeploy.inputs import specs_from_onnx


def _model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", None, 16])
    m = helper.make_tensor_value_info("m", TensorProto.INT64, [None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", None, 16])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x, m], [y])
    return helper.make_model(graph)


def test_unnamed_dynamic_dims_get_one_label_in_every_command():
    """bench's --dim and build's --shapes name an unnamed dim the same way (they once said x_dim1
    and x.1), and two unnamed dims stay two dims."""
    specs = specs_from_onnx(_model())
    assert [s.shape for s in specs] == [("batch", "x_dim1", 16), ("m_dim0",)]
    assert [s.dtype for s in specs] == [np.dtype(np.float32), np.dtype(np.int64)]
    assert [d.dims for d in onnx_inputs(_model())] == [s.shape for s in specs]


def test_inspect_names_an_unnamed_dim_as_build_and_bench_do(tmp_path, run_cli):
    import onnx

    path = tmp_path / "m.onnx"
    onnx.save(_model(), str(path))
    result = run_cli("inspect", path)
    assert result.code == 0, result.err
    assert "dynamic dims: batch, x_dim1 (unnamed), m_dim0 (unnamed)" in result.out, result.out


def test_an_input_too_large_to_generate_is_bad_input():
    from lndeploy.errors import BadInputError

    spec = inputs.InputSpec("x", np.dtype("float32"), (2, "n"), 0.0, 1.0)
    assert inputs.generate([spec], {"n": 4}, seed=0)["x"].shape == (2, 4)
    with pytest.raises(BadInputError, match="'x' of shape \\[2, 1099511627776\\] would have more than"):
        inputs.generate([spec], {"n": 2**40}, seed=0)
