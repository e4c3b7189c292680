"""``to="plugin"``: fused LNs and existing LayerNormalization nodes (any axis, scale and bias as
initializers or graph inputs) become lndeploy plugin nodes that run on CPU through OrtSession's
reference function; a node whose Mean output is used stays and is reported."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lndeploy import plugin_spec
from lndeploy.backends.onnxruntime import OrtSession
from lndeploy.passes.fuse import histogram
from lndeploy.pipeline import fuse
from lndeploy.passes.fuse import _testing as T
from tests.conftest import zoo_model
from tests.passes.conftest import example_feed

PLUGIN = f"{plugin_spec.DOMAIN}.{plugin_spec.OP_TYPE}"


def test_legacy_export_to_plugin_nodes(legacy, tmp_path):
    path, spec = legacy(zoo_model("fnn"), 16)
    out = tmp_path / "plugin.onnx"
    result = fuse(path, out, to="plugin")
    model = onnx.load(out)
    assert histogram(model).get(PLUGIN) == 2 and "LayerNormalization" not in histogram(model)
    assert result.counts["to_plugin"] == 2 and result.ln_nodes == 2
    for node in plugin_spec.plugin_nodes(model):
        assert T.attrs(node)["axis"] == -1 and T.attrs(node)["plugin_namespace"] == b"lndeploy"
    assert not model.functions  # the CPU reference function is added in memory only, never written
    feed = example_feed(spec)
    before, after = OrtSession(str(path)).run(feed), OrtSession(str(out)).run(feed)
    assert before and sorted(after) == sorted(before)
    assert all(np.max(np.abs(after[k] - before[k])) <= 1e-5 for k in before)


def existing_layer_norms():
    """Three LayerNormalization nodes as other tools write them: positive axis with the scale a graph
    input, no bias, and one whose Mean output is a graph output."""
    g = T.Graph(17)
    x = g.input("x", ["batch", 4, 3, 5])
    scale = g.input("scale", [4, 3, 5])
    g.nodes += [
        helper.make_node("LayerNormalization", [x, scale, g.const(T.normal(4, 3, 5, seed=1))], ["a"], axis=1),
        helper.make_node("LayerNormalization", ["a", g.const(T.normal(5, seed=2))], ["b"], epsilon=1e-3),
        helper.make_node("LayerNormalization", ["b", g.const(np.ones(5))], ["c", "mean"], name="keeps_mean"),
    ]
    model = g.model("c")
    model.graph.output.append(helper.make_tensor_value_info("mean", TensorProto.FLOAT, None))
    return model


def test_existing_layer_norms_to_plugin_except_where_mean_is_used():
    model = existing_layer_norms()
    result = fuse(model, to="plugin")
    ops = histogram(result.model)
    assert ops == {PLUGIN: 2, "LayerNormalization": 1}
    assert result.unconverted == [{"node": "keeps_mean", "rule": "to_plugin",
                                   "reason": "its Mean/InvStdDev outputs are used"}]
    first = plugin_spec.plugin_nodes(result.model)[0]
    assert T.attrs(first)["axis"] == -3  # axis 1 of a rank-4 input, counted from the end
    feed = {"x": T.normal(2, 4, 3, 5), "scale": T.normal(4, 3, 5, seed=3)}
    before, after = OrtSession(model).run(feed), OrtSession(result.model).run(feed)
    assert before and sorted(after) == sorted(before)
    assert all(np.max(np.abs(after[k] - before[k])) <= 1e-5 for k in before)


def test_double_layer_norm_stays_native_and_is_reported():
    """The plugin takes float, float16 and bfloat16: a plugin node on a double input would fail the
    checker (and TensorRT), so that node stays, the report says why, and the file is still valid."""
    x = np.random.default_rng(0).standard_normal((3, 4, 8))
    scale = np.linspace(0.5, 1.5, 32).reshape(4, 8)
    graph = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "s"], ["y"], axis=1, epsilon=1e-3)], "g",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["B", 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["B", 4, 8])],
        [numpy_helper.from_array(scale, "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    result = fuse(model, to="plugin")
    assert result.counts["to_plugin"] == 0 and histogram(result.model) == {"LayerNormalization": 1}
    assert result.unconverted == [{"node": "LayerNormalization_0", "rule": "to_plugin",
                                   "reason": "its input is double; the plugin takes float, float16, bfloat16"}]
    onnx.checker.check_model(result.model, full_check=True)
    got = OrtSession(result.model).run({"x": x})["y"]
    d = x - x.mean(axis=(1, 2), keepdims=True)
    want = d / np.sqrt((d * d).mean(axis=(1, 2), keepdims=True) + 1e-3) * scale
    assert float(np.max(np.abs(got - want))) <= 1e-9  # double all the way (fp32 would be ~1e-7)


def test_bf16_model_is_verified_on_the_reference_evaluator(tmp_path):
    """ORT's CPU provider has no bf16 MatMul (NOT_IMPLEMENTED), so `export --precision bf16` followed by
    `fuse --to plugin` could not be verified (exit 2). Both graphs now run on ONNX's reference
    evaluator, which computes in bf16, and the plugin node's result is compared there."""
    from ml_dtypes import bfloat16

    w = T.normal(8, 8, seed=1).astype(bfloat16)
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["xb"], to=TensorProto.BFLOAT16),
         helper.make_node("MatMul", ["xb", "w"], ["h"]),
         helper.make_node("LayerNormalization", ["h", "s", "b"], ["yb"], axis=-1),
         helper.make_node("Cast", ["yb"], ["y"], to=TensorProto.FLOAT)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 8])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(T.normal(8, seed=2).astype(bfloat16), "s"),
         numpy_helper.from_array(T.normal(8, seed=3).astype(bfloat16), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    result = fuse(model, tmp_path / "p.onnx", to="plugin")
    assert result.counts["to_plugin"] == 1
    verification = result.to_dict()["verification"]
    assert verification["backend"] == "onnx-reference" and len(verification["samples"]) == 3
    assert all(s["max_abs"]["y"] <= 1e-2 for s in verification["samples"])
    assert (tmp_path / "p.onnx").exists()
