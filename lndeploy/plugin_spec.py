"""The LayerNorm plugin node: its name, attributes and ONNX schema, shared by every layer.

One node ``lndeploy.LndeployLayerNorm(X, Scale, B) -> Y`` per LayerNorm (README 'The LayerNorm plugin'):

    Y = Scale * (X - mean) / sqrt(var + epsilon) + B,   mean and biased var over axes [axis, rank)

Statistics are computed in fp32 whatever the input type. TensorRT's ONNX parser does not know the op,
so it falls back to its plugin importer, which looks the creator up by ``op_type``, ``plugin_version``
and ``plugin_namespace``. ONNX Runtime does not know it either: for CPU execution
:func:`with_reference_functions` adds a model-local function whose body is ``LayerNormalization``.
That function is added in memory only, never to the file meant for TensorRT, because the TensorRT
parser would import a same-named local function instead of the plugin.
"""

from __future__ import annotations

OP_TYPE = "LndeployLayerNorm"
DOMAIN = "lndeploy"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "lndeploy"
DOMAIN_VERSION = 1
MIN_OPSET = 17  # the first ONNX opset with LayerNormalization: native LN nodes and the plugin's CPU reference

_schema_registered = False


def register_schema() -> None:
    """Make ``onnx.checker`` (and the dynamo exporter) know the plugin op. Idempotent."""
    global _schema_registered
    if _schema_registered:
        return
    import onnx
    from onnx.defs import OpSchema

    try:
        onnx.defs.get_schema(OP_TYPE, DOMAIN_VERSION, DOMAIN)
        _schema_registered = True
        return
    except onnx.defs.SchemaError:
        pass
    types = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"]
    schema = OpSchema(
        OP_TYPE,
        DOMAIN,
        DOMAIN_VERSION,
        doc=__doc__,
        inputs=[
            OpSchema.FormalParameter("X", "T"),
            OpSchema.FormalParameter("Scale", "T"),
            OpSchema.FormalParameter("B", "T"),
        ],
        outputs=[OpSchema.FormalParameter("Y", "T")],
        type_constraints=[("T", types, "float types")],
        attributes=[
            OpSchema.Attribute("epsilon", OpSchema.AttrType.FLOAT, "added to the variance"),
            OpSchema.Attribute("axis", OpSchema.AttrType.INT, "first normalized axis, negative"),
            OpSchema.Attribute("plugin_version", OpSchema.AttrType.STRING, "TensorRT plugin version"),
            OpSchema.Attribute("plugin_namespace", OpSchema.AttrType.STRING, "TensorRT plugin namespace"),
        ],
    )
    onnx.defs.register_schema(schema)
    _schema_registered = True


def make_node(x: str, scale: str, bias: str, y: str, *, epsilon: float, axis: int, name: str | None = None):
    """One plugin node. ``axis`` must already be negative (counted from the end)."""
    import onnx

    if axis >= 0:
        raise ValueError(f"plugin axis must be negative, got {axis}")
    return onnx.helper.make_node(
        OP_TYPE,
        [x, scale, bias],
        [y],
        name=name,
        domain=DOMAIN,
        epsilon=float(epsilon),
        axis=int(axis),
        plugin_version=PLUGIN_VERSION,
        plugin_namespace=PLUGIN_NAMESPACE,
    )


def ensure_opset_import(model) -> None:
    import onnx

    if not any(op.domain == DOMAIN for op in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, DOMAIN_VERSION))


def iter_graphs(graph):
    """The graph and every subgraph below it (Scan/Loop/If bodies), depth first."""
    import onnx

    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from iter_graphs(sub)


def plugin_nodes(model) -> list:
    return [n for g in iter_graphs(model.graph) for n in g.node if is_plugin_node(n)]


def is_plugin_node(node) -> bool:
    return node.op_type == OP_TYPE and node.domain == DOMAIN


def reference_function():
    """A FunctionProto ``lndeploy.LndeployLayerNorm`` whose body is one ``LayerNormalization``."""
    import onnx
    from onnx import helper

    body = helper.make_node("LayerNormalization", ["X", "Scale", "B"], ["Y"], stash_type=1)
    for name in ("epsilon", "axis"):
        ref = onnx.AttributeProto()
        ref.name = name
        ref.ref_attr_name = name
        ref.type = onnx.AttributeProto.FLOAT if name == "epsilon" else onnx.AttributeProto.INT
        body.attribute.append(ref)
    return helper.make_function(
        DOMAIN,
        OP_TYPE,
        inputs=["X", "Scale", "B"],
        outputs=["Y"],
        nodes=[body],
        opset_imports=[helper.make_opsetid("", 18)],
        attributes=["epsilon", "axis", "plugin_version", "plugin_namespace"],
    )


def with_reference_functions(model):
    """A copy of ``model`` that ONNX Runtime can run: plugin nodes resolve to a local LN function."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not plugin_nodes(out):
        return out
    del out.functions[:]
    out.functions.extend([f for f in model.functions if not (f.domain == DOMAIN and f.name == OP_TYPE)])
    out.functions.append(reference_function())
    ensure_opset_import(out)
    if not any(op.domain in ("", "ai.onnx") and op.version >= MIN_OPSET for op in out.opset_import):
        raise ValueError(f"a model with plugin nodes needs ONNX opset >= {MIN_OPSET} for its CPU reference")
    return out
