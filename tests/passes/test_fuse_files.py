"""Files ONNX Runtime loads that fuse used to refuse: nodes out of topological order, a
LayerNormalization below opset 17 as ORT's own optimizer writes it, graph outputs without a shape,
and an LN over a symbolic last dim with Scale and B as graph inputs."""

import numpy as np
import onnxruntime as ort
import onnx
import pytest

from lndeploy.passes.fuse import _testing as T
from lndeploy.pipeline import fuse


def reversed_nodes(model):
    nodes = list(model.graph.node)[::-1]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def test_unsorted_graph_is_sorted_and_fused():
    g = T.Graph(18)
    x = g.input("x", ["batch", 16])
    model = reversed_nodes(g.model(T.layer_norm(g, x, [-1])))
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1}
    assert any("sorted the nodes" in note for note in result.notes)
    x = T.normal(3, 16)
    assert T.max_abs(T.run(result.model, {"x": x})[model.graph.output[0].name], T.ref_layer_norm(x, [-1], 1e-5)) <= 1e-5


@pytest.fixture(scope="module")
def ort_optimized_opset12(tmp_path_factory):
    """A primitive-op LN at opset 12 after ONNX Runtime's own optimizer: it writes LayerNormalization
    (its contrib kernel) at the file's opset 12, next to an opset-12 Unsqueeze (axes as attribute)."""
    g = T.Graph(12)
    x = g.input("x", ["batch", 16])
    y = T.layer_norm(g, x, [-1])
    y = g.op("Add", g.op("Mul", y, g.const(np.linspace(0.5, 1.5, 16))), g.const(np.linspace(-1, 1, 16)))
    model = g.model(g.unsqueeze(y, [0]))
    folder = tmp_path_factory.mktemp("ort12")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(folder / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(options.optimized_model_filepath)
    assert T.ops(optimized) == {"LayerNormalization": 1, "Unsqueeze": 1}
    assert next(o.version for o in optimized.opset_import if o.domain in ("", "ai.onnx")) == 12
    return model, optimized


@pytest.mark.parametrize("to", ["native", "plugin"])
def test_ort_optimized_layer_norm_below_opset_17_is_accepted(ort_optimized_opset12, to):
    model, optimized = ort_optimized_opset12
    result = fuse(optimized, to=to)
    assert result.opset_before == 12 and result.opset_after == 17
    # onnx's version converter rewrote the Unsqueeze around the LN (axes as an input from opset 13)
    ln = "LayerNormalization" if to == "native" else "lndeploy.LndeployLayerNorm"
    assert T.ops(result.model) == {ln: 1, "Unsqueeze": 1, "Constant": 1}
    x = T.normal(3, 16)
    want = T.ref_layer_norm(x, [-1], 1e-5, np.linspace(0.5, 1.5, 16), np.linspace(-1, 1, 16))[None]
    assert T.max_abs(T.run(result.model, {"x": x})[optimized.graph.output[0].name], want) <= 1e-5


def test_ort_optimized_file_below_opset_17_goes_through_the_cli(ort_optimized_opset12, tmp_path, run_cli):
    """ONNX's checker refuses LayerNormalization at opset 12 ("No Op registered"): the file was exit 2
    for every command; only the API path (a ModelProto) went through."""
    _, optimized = ort_optimized_opset12
    path = tmp_path / "optimized.onnx"
    onnx.save(optimized, str(path))
    for to in ("native", "plugin"):
        result = run_cli("fuse", path, "-o", tmp_path / f"{to}.onnx", "--to", to)
        assert result.code == 0 and "opset 12 -> 17" in result.out, result.out + result.err
    shown = run_cli("inspect", path)
    assert shown.code == 0 and "normalization nodes: 1" in shown.out, shown.err
    assert onnx.load(str(path)) == optimized  # the check's changes were undone, nothing written back
    broken = onnx.load(str(path))
    broken.graph.node[1].op_type = "NoSuchOp"  # the rest of the file is still checked
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    assert run_cli("inspect", tmp_path / "broken.onnx").code == 2
    misspelled = onnx.load(str(path))  # and so are the LN's own attributes (ORT's tests hold an "epsion")
    misspelled.graph.node[0].attribute.append(onnx.helper.make_attribute("epsion", 1e-5))
    onnx.save(misspelled, str(tmp_path / "misspelled.onnx"))
    shown = run_cli("inspect", tmp_path / "misspelled.onnx")
    assert shown.code == 2 and "Unrecognized attribute: epsion for operator LayerNormalization" in shown.err


def test_shape_less_graph_output_is_fused():
    g = T.Graph(18)
    x = g.input("x", ["batch", 16])
    model = g.model(T.layer_norm(g, x, [-1]))
    model.graph.output[0].type.tensor_type.ClearField("shape")
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1}


def test_symbolic_last_dim_with_scale_and_bias_inputs():
    """``LayerNormalization(axis=-1)`` does not need N: the scale of ones is ConstantOfShape(Shape(x)[-1:])
    until the Scale input of shape [N] replaces it; B of shape [N] folds too."""
    g = T.Graph(18)
    x, s, b = g.input("x", ["M", "N"]), g.input("scale", ["N"]), g.input("bias", ["N"])
    model = g.model(g.op("Add", g.op("Mul", T.layer_norm(g, x, [-1]), s), b))
    result = fuse(model)
    assert T.ops(result.model) == {"LayerNormalization": 1} and not result.unconverted
    assert list(T.node(result.model, "LayerNormalization").input) == ["x", "scale", "bias"]
    for n in (7, 32):
        feed = {"x": T.normal(3, n), "scale": T.normal(n, seed=1), "bias": T.normal(n, seed=2)}
        want = T.ref_layer_norm(feed["x"], [-1], 1e-5, feed["scale"], feed["bias"])
        got = T.run(result.model, feed)[model.graph.output[0].name]
        assert T.max_abs(got, want) <= 1e-5 * np.abs(want).max()


def test_symbolic_dims_with_a_scale_of_other_dims_keeps_its_mul():
    """A scale of static shape [16] against a symbolic N cannot be shown to fit: the LN fuses, the Mul stays."""
    g = T.Graph(18)
    x = g.input("x", ["M", "N"])
    model = g.model(g.op("Mul", T.layer_norm(g, x, [-1]), g.const(np.ones(16))), shape=["M", 16])
    result = fuse(model, verify=False)
    assert T.ops(result.model)["LayerNormalization"] == 1 and T.ops(result.model)["Mul"] == 1


def test_unsorted_file_is_sorted_on_load_by_every_command(tmp_path, run_cli):
    """ONNX's checker refuses nodes out of order (exit 2 before); ORT sorts them, and so does load_model."""
    g = T.Graph(18)
    x = g.input("x", ["batch", 16])
    path = tmp_path / "unsorted.onnx"
    onnx.save(reversed_nodes(g.model(T.layer_norm(g, x, [-1]))), str(path))
    fused = run_cli("fuse", path, "-o", tmp_path / "fused.onnx")
    assert fused.code == 0, fused.err
    assert "sorted the nodes of graph 'g'" in fused.out and "normalization nodes: 0 -> 1" in fused.out, fused.out
    shown = run_cli("inspect", path)
    assert shown.code == 0, shown.err
    x_value = T.normal(3, 16)
    from lndeploy import Session

    got = Session(path).run({"x": x_value})
    assert T.max_abs(next(iter(got.values())), T.ref_layer_norm(x_value, [-1], 1e-5)) <= 1e-5


def test_sorting_keeps_the_file_order_where_it_is_free_and_reaches_subgraphs():
    from lndeploy.onnxfile import sort_nodes

    def node(out, *inputs):
        return onnx.helper.make_node("Identity" if len(inputs) == 1 else "Add", list(inputs), [out], name=out)

    body = onnx.helper.make_graph([node("b2", "b1"), node("b1", "a")], "body", [], [])  # reads outer 'a'
    nodes = [node("c", "a", "b"), node("a", "x"), node("b", "x"),
             onnx.helper.make_node("If", ["cond"], ["d"], name="d", then_branch=body, else_branch=body)]
    graph = onnx.helper.make_graph(nodes, "main", [], [])
    assert sort_nodes(graph) == ["main", "body", "body"]
    assert [n.name for n in graph.node] == ["a", "b", "c", "d"]  # 'd' reads 'a' through its subgraphs
    assert [n.name for n in graph.node[3].attribute[0].g.node] == ["b1", "b2"]
    assert sort_nodes(graph) == []  # sorted already: nothing to do
    cycle = onnx.helper.make_graph([node("p", "q"), node("q", "p")], "cycle", [], [])
    assert sort_nodes(cycle) == [] and [n.name for n in cycle.node] == ["p", "q"]  # left as it is


def test_a_dim_written_as_minus_one_is_unknown_not_a_crash(tmp_path, run_cli):
    """Some exporters write -1 for a dynamic dim (ONNX Runtime runs it): fuse made a scale of ones of
    that size and died (numpy: negative dimensions, exit 4). Now the LN fuses over the unknown dim and
    the gain, which cannot be shown to fit, stays with a note."""
    g = T.Graph(18)
    x = g.input("x", ["batch", 16])
    model = g.model(g.op("Mul", T.layer_norm(g, x, [-1]), g.const(np.linspace(0.5, 1.5, 16))))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = -1
    path = tmp_path / "minus_one.onnx"
    onnx.save(model, str(path))
    result = run_cli("fuse", path, "-o", tmp_path / "fused.onnx")
    assert result.code == 0, result.err
    assert "normalization nodes: 0 -> 1" in result.out and "does not broadcast to [?]" in result.out, result.out


@pytest.mark.parametrize("backend", ["onnxruntime", "onnx-reference"])
def test_a_session_takes_any_size_at_a_minus_one_dim(backend):
    """ORT reports the -1 as it is: the feed check refused every size ('the model expects -1')."""
    from lndeploy import Session

    g = T.Graph(18)
    x = g.input("x", ["batch", 16])
    model = g.model(T.layer_norm(g, x, [-1]))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = -1
    session = Session(model, backend=backend)
    assert session.inputs[0].shape == ("batch", None)
    feed = T.normal(2, 16)
    assert T.max_abs(session.run({"x": feed})[model.graph.output[0].name], T.ref_layer_norm(feed, [-1], 1e-5)) <= 1e-5


def test_a_huge_fixed_dim_is_bad_input_not_a_memory_error(tmp_path, run_cli):
    """A file fixing a dim at 2**40: the scale of ones is computed from Shape(x) rather than written
    as a 4 TiB constant, and verification refuses to draw such an input (exit 2, was exit 4)."""
    g = T.Graph(18)
    x = g.input("x", [2, 2**40])
    path = tmp_path / "huge.onnx"
    onnx.save(g.model(T.layer_norm(g, x, [-1])), str(path))
    result = run_cli("fuse", path, "-o", tmp_path / "fused.onnx")
    assert result.code == 2 and "too large to generate" in result.err, result.err
    assert not (tmp_path / "fused.onnx").exists()
    result = run_cli("fuse", path, "-o", tmp_path / "fused.onnx", "--no-verify")
    assert result.code == 0 and "normalization nodes: 0 -> 1" in result.out
    assert (tmp_path / "fused.onnx").stat().st_size < 10_000
