"""Optimization-profile planning for ``lndeploy build`` (pure Python: no TensorRT needed)."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from lndeploy.backends.tensorrt.shapes import InputDims, onnx_inputs, parse_shapes_option, plan_profile
from lndeploy.errors import BadInputError

RNN = [InputDims("x", ("batch", "seq", 16), TensorProto.FLOAT)]
TWO = [InputDims("ids", ("batch", "seq"), TensorProto.INT64), InputDims("mask", ("batch", "seq"), TensorProto.FLOAT)]


def test_defaults_cover_what_check_feeds():
    plan = plan_profile(RNN)
    assert plan["dims"] == {"batch": [1, 8, 8], "seq": [1, 64, 64]}
    assert plan["inputs"]["x"] == {"min": [1, 1, 16], "opt": [8, 64, 16], "max": [8, 64, 16]}
    # lndeploy check feeds batch {1, 3} and other dynamic dims {1, 7, 64}
    assert plan["dims"]["batch"][2] >= 3 and plan["dims"]["seq"][2] >= 64


def test_example_sizes_give_opt_and_never_shrink_max():
    plan = plan_profile(RNN, examples={"x": (2, 100, 16)})
    assert plan["dims"] == {"batch": [1, 2, 8], "seq": [1, 100, 100]}


def test_overrides_by_dim_name_and_by_input_shape():
    plan = plan_profile(RNN, shapes={"seq": (1, 32, 256)})
    assert plan["dims"]["seq"] == [1, 32, 256] and plan["dims"]["batch"] == [1, 8, 8]
    plan = plan_profile(RNN, shapes={"x": ((1, 1, 16), (4, 10, 16), (16, 50, 16))})
    assert plan["dims"] == {"batch": [1, 4, 16], "seq": [1, 10, 50]}


def test_shared_labels_stay_consistent_across_inputs():
    plan = plan_profile(TWO, shapes={"mask": ((1, 1), (2, 5), (4, 9))})
    assert plan["inputs"]["ids"] == plan["inputs"]["mask"] == {"min": [1, 1], "opt": [2, 5], "max": [4, 9]}


@pytest.mark.parametrize("shapes, message", [
    ({"seq": (4, 2, 8)}, "out of order"),
    ({"seq": (0, 2, 8)}, "out of order"),
    ({"heads": (1, 2, 3)}, "neither a dynamic dim (batch, seq) nor an input (x)"),
    ({"x": (1, 2, 3)}, "has 2 dynamic dims"),
    ({"x": ((1, 1, 16), (2, 2, 32), (4, 4, 16))}, "dim 2 is fixed at 16"),
    ({"x": ((1, 1), (2, 2), (4, 4))}, "3 shapes of rank 3"),
])
def test_bad_overrides_are_one_line_errors(shapes, message):
    with pytest.raises(BadInputError) as info:
        plan_profile(RNN, shapes=shapes)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_shape_items():
    assert parse_shapes_option(["batch:1,8,32", "x:1x16,4x16,8x16"]) == {
        "batch": (1, 8, 32), "x": ((1, 16), (4, 16), (8, 16))}
    for bad in ("batch=1,2,3", "batch:1,2", "batch:1,two,3", "x:1x,2,3"):
        with pytest.raises(BadInputError, match="--shapes"):
            parse_shapes_option([bad])
    with pytest.raises(BadInputError, match="twice"):
        parse_shapes_option(["seq:1,2,3", "seq:1,2,4"])


def test_onnx_inputs_reads_named_unnamed_and_fixed_dims():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", None, 16])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [16])  # an initializer listed as input
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", None, 16])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x, w], [y],
                              initializer=[helper.make_tensor("w", TensorProto.FLOAT, [16], [0.0] * 16)])
    inputs = onnx_inputs(helper.make_model(graph))
    # the same label bench's --dim and check use for an unnamed dim (lndeploy.inputs.onnx_dim)
    assert inputs == [InputDims("x", ("batch", "x_dim1", 16), TensorProto.FLOAT)]
    assert plan_profile(inputs)["dims"] == {"batch": [1, 8, 8], "x_dim1": [1, 64, 64]}
