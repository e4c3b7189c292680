"""What fuse does around the rewrite: files ONNX Runtime cannot load as they are, models with
nothing to fuse, external data, graph interface kept."""

import numpy as np
import onnx
from onnx import TensorProto, helper

from lndeploy.backends.onnxruntime import OrtSession
from lndeploy.passes.fuse import _testing as T


def test_model_with_nothing_to_fuse_is_written_back_even_where_ort_cannot_run_it(run_cli, tmp_path):
    """A custom op ONNX Runtime does not know: nothing to fuse, so nothing to verify; exit 0, same bytes."""
    node = helper.make_node("Mystery", ["x"], ["y"], domain="vendor.ops")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("vendor.ops", 1)], ir_version=8)
    source, out = tmp_path / "custom.onnx", tmp_path / "out.onnx"
    onnx.save(model, str(source))
    result = run_cli("fuse", source, "-o", out)
    assert result.code == 0, result.err
    assert "nothing changed" in result.out
    assert out.read_bytes() == source.read_bytes()


def test_ir_version_newer_than_ort_reads_is_still_verified(run_cli, tmp_path):
    """onnx writes IR ``onnx.IR_VERSION`` by default (14 with onnx 1.23), newer than ORT 1.31 reads (13):
    verification runs on copies at the lowest IR version the opsets allow; the file keeps its own."""
    g = T.Graph(16)
    x = g.input("x", ["batch", 16])
    model = g.model(T.layer_norm(g, x, [-1], eps=1e-5))
    model.ir_version = onnx.IR_VERSION
    source, out = tmp_path / "new_ir.onnx", tmp_path / "out.onnx"
    onnx.save(model, str(source))
    result = run_cli("fuse", source, "-o", out)
    assert result.code == 0, result.err
    # two random samples and the constant/zero-row one, each with the tolerance actually used
    assert result.out.count("verified with ONNX Runtime at batch=") == 3
    assert result.out.count("(tolerance float32 abs 1e-05 or rel 1e-05)") == 3
    fused = onnx.load(str(out))
    assert fused.ir_version == onnx.IR_VERSION and T.ops(fused) == {"LayerNormalization": 1}
    fused.ir_version = 8  # to run it here
    feed = {"x": T.normal(3, 16)}
    got = OrtSession(fused).run(feed)[fused.graph.output[0].name]
    assert T.max_abs(got, T.ref_layer_norm(feed["x"], [-1], 1e-5)) <= 1e-5


def test_external_data_model_is_read_and_written_as_one_file(run_cli, tmp_path):
    g = T.Graph(16)
    x = g.input("x", ["batch", 16])
    scale = T.normal(16, seed=3)
    model = g.model(g.op("Mul", T.layer_norm(g, x, [-1], eps=1e-5), g.const(scale)))
    folder = tmp_path / "in"
    folder.mkdir()
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, location="model.onnx.data",
              size_threshold=0)
    out = tmp_path / "fused.onnx"
    result = run_cli("fuse", folder / "model.onnx", "-o", out)
    assert result.code == 0, result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fused.onnx", "in"]
    fused = onnx.load(str(out))
    assert T.ops(fused) == {"LayerNormalization": 1}
    assert [i.name for i in fused.graph.input] == ["x"] and len(fused.graph.output) == 1
    feed = {"x": T.normal(3, 16)}
    got = OrtSession(fused).run(feed)[fused.graph.output[0].name]
    assert T.max_abs(got, T.ref_layer_norm(feed["x"], [-1], 1e-5, scale)) <= 1e-5
    onnx.checker.check_model(fused, full_check=True)
    assert np.array_equal(T.initializer(fused, T.node(fused, "LayerNormalization").input[1]), scale)
