"""LayerNorm inside a Scan body (a recurrent cell): fused there too, with the gain and bias coming
from the outer graph, natively and as a plugin node."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from lndeploy.backends.onnxruntime import OrtSession
from lndeploy.passes.fuse import histogram
from lndeploy.pipeline import fuse

H = 16


def scan_with_primitive_ln():
    """h_t = LN(h_{t-1} + x_t) * w + b, written as the legacy exporter writes LN, w and b outer-scope."""
    f = TensorProto.FLOAT
    body_nodes = [
        helper.make_node("Add", ["h", "xt"], ["a"]),
        helper.make_node("ReduceMean", ["a"], ["m"], axes=[-1]), helper.make_node("Sub", ["a", "m"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["dd"]), helper.make_node("ReduceMean", ["dd"], ["v"], axes=[-1]),
        helper.make_node("Add", ["v", "eps"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["s"]),
        helper.make_node("Div", ["d", "s"], ["n"]), helper.make_node("Mul", ["n", "w"], ["nw"]),
        helper.make_node("Add", ["nw", "b"], ["h2"]), helper.make_node("Identity", ["h2"], ["y"]),
    ]
    body = helper.make_graph(
        body_nodes, "cell", [helper.make_tensor_value_info(n, f, ["B", H]) for n in ("h", "xt")],
        [helper.make_tensor_value_info(n, f, ["B", H]) for n in ("h2", "y")],
        [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
         numpy_helper.from_array(np.array(1e-5, np.float32), "eps")])
    scan = helper.make_node("Scan", ["h0", "x"], ["hT", "ys"], num_scan_inputs=1, body=body,
                            scan_input_axes=[1], scan_output_axes=[1])
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [scan], "rnn",
        [helper.make_tensor_value_info("h0", f, ["B", H]), helper.make_tensor_value_info("x", f, ["B", "T", H])],
        [helper.make_tensor_value_info("hT", f, ["B", H]), helper.make_tensor_value_info("ys", f, ["B", "T", H])],
        [numpy_helper.from_array(rng.uniform(0.5, 1.5, H).astype(np.float32), "w"),
         numpy_helper.from_array(rng.uniform(-0.5, 0.5, H).astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)], ir_version=8)
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("to, node", [("native", "LayerNormalization"), ("plugin", "lndeploy.LndeployLayerNorm")])
def test_ln_in_scan_body(to, node):
    model = scan_with_primitive_ln()
    result = fuse(model, to=to)
    assert histogram(result.model) == {"Scan": 1, "Add": 1, "Identity": 1, node: 1}
    assert result.counts["layer_norm"] == result.counts["ln_scale"] == result.counts["ln_bias"] == 1
    rng = np.random.default_rng(1)
    feed = {"h0": rng.standard_normal((3, H), np.float32), "x": rng.standard_normal((3, 5, H), np.float32)}
    before, after = OrtSession(model).run(feed), OrtSession(result.model).run(feed)
    assert before and sorted(after) == sorted(before)
    assert all(np.max(np.abs(after[k] - before[k])) <= 1e-5 for k in before)
