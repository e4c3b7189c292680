"""Rewrite every ``LayerNormalization`` node into one lndeploy plugin node.

    LayerNormalization(X, Scale, B; axis=a, epsilon=e)  ->  LndeployLayerNorm(X, Scale, B; axis=a', epsilon=e)

with ``a' = a - rank(X)`` when ``a >= 0`` (the plugin's axis is negative). Subgraphs (Scan, Loop, If
bodies) are rewritten too. A missing B becomes a zero initializer of Scale's shape and type. A node
whose optional Mean / InvStdDev outputs are consumed is left alone and reported: the plugin has no
such outputs. A non-negative axis needs X's rank, so shape inference runs first. The plugin takes
float, float16 and bfloat16 (its schema, and TensorRT): a node of another type (double) stays and is
reported, since the plugin node would make the model invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lndeploy import plugin_spec

# TensorProto element types the plugin's schema takes: FLOAT, FLOAT16, BFLOAT16
PLUGIN_TYPES = {1: "float", 10: "float16", 16: "bfloat16"}


@dataclass
class PluginRewriteReport:
    rewritten: int = 0
    skipped: list = field(default_factory=list)  # (node name, reason)


def rewrite(model) -> tuple[object, PluginRewriteReport]:
    """Return a rewritten copy of ``model`` and what was done."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    ranks, types = _ranks(out)
    report = PluginRewriteReport()
    for graph in plugin_spec.iter_graphs(out.graph):
        _rewrite_graph(graph, ranks, types, report)
    if report.rewritten:
        plugin_spec.ensure_opset_import(out)
        plugin_spec.register_schema()
    return out, report


def _rewrite_graph(graph, ranks: dict, types: dict, report: PluginRewriteReport) -> None:
    import onnx
    from onnx import helper, numpy_helper

    consumed = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    new_nodes = []
    for index, node in enumerate(graph.node):
        if node.op_type != "LayerNormalization" or node.domain not in ("", "ai.onnx"):
            new_nodes.append(node)
            continue
        name = node.name or f"LayerNormalization_{index}"
        if any(o and o in consumed for o in node.output[1:]):
            report.skipped.append((name, "its Mean/InvStdDev outputs are used"))
            new_nodes.append(node)
            continue
        elem = types.get(node.input[0])
        if elem is not None and elem not in PLUGIN_TYPES:
            type_name = onnx.TensorProto.DataType.Name(elem).lower()
            report.skipped.append((name, f"its input is {type_name}; the plugin takes "
                                         f"{', '.join(PLUGIN_TYPES.values())}"))
            new_nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axis = attrs.get("axis", -1)
        if axis >= 0:
            rank = ranks.get(node.input[0])
            if rank is None:
                report.skipped.append((name, f"axis {axis} is not negative and the input's rank is unknown"))
                new_nodes.append(node)
                continue
            axis -= rank
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else ""
        if not bias:
            bias, extra = _zero_bias(graph, node, name, numpy_helper, onnx)
            new_nodes.extend(extra)
        plugin = plugin_spec.make_node(node.input[0], node.input[1], bias, node.output[0],
                                       epsilon=attrs.get("epsilon", 1e-5), axis=axis, name=name)
        # the exporter's module path and source line stay with the node: check --layers names it by them
        plugin.metadata_props.extend(node.metadata_props)
        new_nodes.append(plugin)
        report.rewritten += 1
    del graph.node[:]
    graph.node.extend(new_nodes)


def _zero_bias(graph, node, name: str, numpy_helper, onnx) -> tuple[str, list]:
    """Zeros shaped like Scale: from its initializer when constant, else ``Scale * 0`` in the graph."""
    scale = node.input[1]
    for init in graph.initializer:
        if init.name == scale:
            zeros = numpy_helper.to_array(init) * 0
            tensor = numpy_helper.from_array(zeros, name=f"{name}_zero_bias")
            graph.initializer.append(tensor)
            return tensor.name, []
    zero_name = f"{name}_zero_bias"
    return zero_name, [onnx.helper.make_node("Sub", [scale, scale], [zero_name], name=f"{name}_zero_bias_op")]


def _ranks(model) -> tuple[dict, dict]:
    """Rank of every value whose shape is known after shape inference, and element type of those typed."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # unknown custom ops, partial models: use what is declared
        inferred = model
    ranks, types = {}, {}
    for graph in plugin_spec.iter_graphs(inferred.graph):
        for value in list(graph.value_info) + list(graph.input) + list(graph.output):
            t = value.type.tensor_type
            if t.HasField("shape"):
                ranks[value.name] = len(t.shape.dim)
            if t.elem_type:
                types[value.name] = t.elem_type
        for init in graph.initializer:
            ranks[init.name] = len(init.dims)
            types[init.name] = init.data_type
    return ranks, types
