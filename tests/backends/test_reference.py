"""The onnx-reference backend: ORT's interface, ONNX's reference evaluator underneath, no upcasting."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import lndeploy
from lndeploy.backends import TensorMeta
from lndeploy.backends.reference import ReferenceSession
from lndeploy.errors import BadInputError
from lndeploy.pipeline import export
from tests.conftest import zoo_model


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, zoo_export):
    """fnn (native LN) and lstm (Scan, plugin nodes inside its body), written to disk."""
    folder = tmp_path_factory.mktemp("reference")
    return {
        "fnn": zoo_export("fnn").path,
        "lstm_plugin": export(zoo_model("lstm"), folder / "lstm_plugin.onnx", ln="plugin").path,
    }


def test_interface_matches_the_ort_session(zoo):
    session = lndeploy.Session(zoo["fnn"], backend="onnx-reference")
    assert (session.backend, session.provider) == ("onnx-reference", "onnx.reference")
    assert session.inputs == [TensorMeta("input", np.dtype("float32"), ("batch", 64))]
    assert session.outputs == [TensorMeta("output", np.dtype("float32"), ("batch", 10))]
    ort = lndeploy.Session(zoo["fnn"])
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    got = session.run({"input": x})
    assert list(got) == ["output"] and got["output"].dtype == np.float32
    np.testing.assert_allclose(got["output"], ort.run({"input": x})["output"], atol=1e-5)
    # a sequence in input order and torch tensors work too
    np.testing.assert_array_equal(session.run([torch.from_numpy(x)])["output"], got["output"])


def test_scan_with_plugin_nodes_matches_pytorch_at_several_lengths(zoo):
    from lndeploy import modelfile, plugin_spec

    model = onnx.load(zoo["lstm_plugin"])
    assert len(plugin_spec.plugin_nodes(model)) == 3 and not model.functions  # plugin nodes in the Scan body
    session = ReferenceSession(zoo["lstm_plugin"])
    module = modelfile.load(zoo_model("lstm")).module
    for length in (1, 7):
        x = torch.randn(2, length, 16)
        got = session.run([x])
        with torch.inference_mode():
            expected = torch.utils._pytree.tree_leaves(module(x))
        assert len(got) == len(expected) >= 2  # the output sequence and the final state(s)
        for value, ref in zip(got.values(), expected):
            assert value.flags.c_contiguous  # Polygraphy's comparator needs it (Scan outputs are views)
            np.testing.assert_allclose(value, ref.numpy(), atol=1e-5)


def _one_op_model(op: str, elem_type: int, inputs=("x",), extra_inits=(), **attrs):
    names = list(inputs) + [t.name for t in extra_inits]
    graph = helper.make_graph(
        [helper.make_node(op, names, ["y"], **attrs)], "g",
        [helper.make_tensor_value_info(n, elem_type, ["n", 4]) for n in inputs],
        [helper.make_tensor_value_info("y", elem_type, None)],
        initializer=list(extra_inits),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_fp16_arithmetic_is_done_in_fp16_and_returned_as_fp16():
    session = ReferenceSession(_one_op_model("Mul", TensorProto.FLOAT16, inputs=("a", "b")))
    a = np.full((1, 4), 300.0, np.float32)  # fp32 input is converted to the graph's fp16
    with np.errstate(over="ignore"):
        got = session.run({"a": a, "b": a})["y"]
    assert got.dtype == np.float16 and np.isinf(got).all()  # 9e4 > 65504: no silent fp32


def test_fp16_layernormalization_ignores_stash_type_on_the_reference_evaluator():
    """Why lndeploy's plans use fp32 islands: stash_type=1 does not save an fp16 LN here."""
    scale = helper.make_tensor("scale", TensorProto.FLOAT16, [4], np.ones(4, np.float16))
    bias = helper.make_tensor("bias", TensorProto.FLOAT16, [4], np.zeros(4, np.float16))
    model = _one_op_model("LayerNormalization", TensorProto.FLOAT16, extra_inits=(scale, bias), stash_type=1)
    x = np.array([[-300.0, -100.0, 100.0, 300.0]], np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        got = ReferenceSession(model).run([x])["y"]
    expected = (x - x.mean()) / np.sqrt(x.var() + 1e-5)
    assert got.dtype == np.float16
    assert not np.allclose(got.astype(np.float32), expected, atol=1e-2)  # overflowed
    same_fp32 = _one_op_model("LayerNormalization", TensorProto.FLOAT, extra_inits=(
        helper.make_tensor("scale", TensorProto.FLOAT, [4], np.ones(4)),
        helper.make_tensor("bias", TensorProto.FLOAT, [4], np.zeros(4))))
    np.testing.assert_allclose(ReferenceSession(same_fp32).run([x])["y"], expected, atol=1e-5)


def test_bf16_stays_bf16():
    model = _one_op_model("Add", TensorProto.BFLOAT16, inputs=("a", "b"))
    session = ReferenceSession(model)
    assert session.inputs[0].dtype == np.dtype(ml_dtypes.bfloat16)
    one = np.ones((1, 4), np.float32)
    got = session.run({"a": one, "b": one * 2**-9})["y"]  # 1 + 2^-9 needs 9 bits: bf16 has 8
    assert got.dtype == ml_dtypes.bfloat16 and (got.astype(np.float32) == 1.0).all()


def test_scalar_output_keeps_shape_of_a_scalar():
    """A loss-like ReduceMean with keepdims=0 gives shape (); it once came back as (1,), which check
    then reported as a shape mismatch against PyTorch."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["y"], keepdims=0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    session = ReferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    got = session.run({"x": np.arange(6, dtype=np.float32).reshape(2, 3)})["y"]
    assert got.shape == () and float(got) == 2.5


def test_gather_elements_beyond_64_choices():
    """onnx 1.23's own GatherElements fails here (np.choose takes <= 64 choices): BERT's position ids."""
    graph = helper.make_graph(
        [helper.make_node("GatherElements", ["data", "idx"], ["y"], axis=1)], "g",
        [helper.make_tensor_value_info("data", TensorProto.INT64, [1, 512]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    session = ReferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    data = np.arange(512, dtype=np.int64)[None] * 10
    idx = np.array([[0, 3, 511, -1] * 4], np.int64)
    np.testing.assert_array_equal(session.run([data, idx])["y"], [[0, 30, 5110, 5110] * 4])


def test_errors_are_one_line_lndeploy_errors(tmp_path, zoo):
    with pytest.raises(BadInputError, match="not found"):
        ReferenceSession(tmp_path / "missing.onnx")
    with pytest.raises(BadInputError, match="expected an ONNX model"):
        ReferenceSession(42)
    session = ReferenceSession(zoo["fnn"])
    with pytest.raises(BadInputError, match="not in the model"):
        session.run({"nope": np.zeros((1, 64), np.float32)})
    with pytest.raises(BadInputError, match="dim 1"):
        session.run([np.zeros((1, 63), np.float32)])
