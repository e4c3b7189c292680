"""Small ONNX graphs as other exporters and hand-written tools write them (not lndeploy export)."""

from __future__ import annotations

import numpy as np


def _save(graph, path, opset: int = 17, ir_version: int | None = None):
    import onnx
    from onnx import helper

    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets)
    # the lowest IR the opset allows (onnx 1.23 writes 14 by default, which ORT 1.31 refuses)
    model.ir_version = ir_version or helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def layer_norm(path, x_dims=("batch", 16), outputs=("y",), dtype=None, ir_version=None, scale_as_input=False):
    """One LayerNormalization over the last axis; ``outputs`` may name Mean/InvStdDev that nothing reads."""
    from onnx import TensorProto, helper, numpy_helper

    dtype = TensorProto.FLOAT if dtype is None else dtype
    width = x_dims[-1]
    inputs = [helper.make_tensor_value_info("x", dtype, list(x_dims))]
    weights = []
    if scale_as_input:  # as in ONNX's own test models: scale and bias are graph inputs, no initializers
        inputs += [helper.make_tensor_value_info(n, dtype, [width]) for n in ("w", "b")]
    else:
        np_type = helper.tensor_dtype_to_np_dtype(dtype)
        weights = [numpy_helper.from_array(np.ones(width, np_type), "w"),
                   numpy_helper.from_array(np.zeros(width, np_type), "b")]
    node = helper.make_node("LayerNormalization", ["x", "w", "b"], list(outputs), axis=-1)
    graph = helper.make_graph([node], "ln", inputs, [helper.make_tensor_value_info("y", dtype, list(x_dims))],
                              weights)
    return _save(graph, path, ir_version=ir_version)


def two_inputs_one_dim(path, ir_version=None):
    """``a + b`` then LN; both inputs are ("n", "n", 16): one name, one size (ONNX semantics)."""
    from onnx import TensorProto, helper, numpy_helper

    dims = ["n", "n", 16]
    weights = [numpy_helper.from_array(np.ones(16, np.float32), "w"),
               numpy_helper.from_array(np.zeros(16, np.float32), "b")]
    nodes = [helper.make_node("Add", ["a", "b_in"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "w", "b"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims)
                                           for n in ("a", "b_in")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)], weights)
    return _save(graph, path, ir_version=ir_version)


def ln_in_if(path):
    """An LN in the then-branch of an If (not a loop)."""
    from onnx import TensorProto, helper, numpy_helper

    weights = [numpy_helper.from_array(np.ones(16, np.float32), "w"),
               numpy_helper.from_array(np.zeros(16, np.float32), "b")]
    out = ["batch", 16]
    then = helper.make_graph([helper.make_node("LayerNormalization", ["x", "w", "b"], ["t"], axis=-1)], "then",
                             [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, out)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, out)])
    graph = helper.make_graph([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, out),
                               helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], weights)
    return _save(graph, path)


def fixed_reshape(path):
    """Declares a dynamic batch but reshapes to the export's batch of 2, as legacy traces do."""
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([2, 8, 2], np.int64), "shape")
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 2])], [shape])
    return _save(graph, path)


def with_external_data(folder):
    """``folder/model.onnx`` + ``folder/model.onnx.data`` (weights outside), as the dynamo exporter writes."""
    import onnx

    plain = layer_norm(folder / "plain.onnx", x_dims=("batch", 4096))
    model = onnx.load(str(plain))
    (folder / "plain.onnx").unlink()
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, location="model.onnx.data",
              size_threshold=0)
    return folder / "model.onnx"


def matmul(path, dtype):
    """``x @ w`` in ``dtype`` (ORT's CPU provider has no bf16 MatMul kernel)."""
    from onnx import helper, numpy_helper

    np_type = helper.tensor_dtype_to_np_dtype(dtype)
    weight = numpy_helper.from_array(np.eye(16, dtype=np.float32).astype(np_type), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", dtype, ["batch", 16])],
                              [helper.make_tensor_value_info("y", dtype, ["batch", 16])], [weight])
    return _save(graph, path)


def sequence_input(path):
    """A graph input that is a sequence of tensors (what scripted loops export), picked by index."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("SequenceAt", ["s", "i"], ["y"])], "g",
                              [helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, [3]),
                               helper.make_tensor_value_info("i", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    return _save(graph, path)
