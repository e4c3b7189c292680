"""What a user needs to know about an artifact: I/O with dynamic dims, LN nodes and their form,
precision, plugins. ONNX files are read directly; engines through their JSON sidecar."""

from __future__ import annotations

import collections
import json
from pathlib import Path

from lndeploy import plugin_spec
from lndeploy.backends.tensorrt import sidecar
from lndeploy.errors import BadInputError
from lndeploy.inputs import unnamed_dim_label
from lndeploy.onnxfile import graph_inputs, primitive_norm_hint

_ELEM = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64", 7: "int64", 6: "int32", 9: "bool", 3: "int8", 2: "uint8"}
_FLOATS = ("fp32", "fp16", "bf16", "fp64")
_NORM_OPS = ("LayerNormalization", "RMSNormalization", "SkipLayerNormalization", plugin_spec.OP_TYPE)


def inspect_artifact(path) -> dict:
    path = Path(path)
    if sidecar.is_engine(path):
        return inspect_engine(path)
    from lndeploy.onnxfile import external_data_files, load_model

    # inspect reads the structure only: external weights (possibly GBs) are not loaded, just located
    model = load_model(path, load_external_data=False)
    info = inspect_onnx(model, str(path))
    info["external_data"] = [{"file": f, "present": (path.parent / f).is_file()} for f in external_data_files(model)]
    return info


# First bytes of a serialized engine: full TensorRT writes "ftrt", TensorRT-RTX "vtrt".
_ENGINE_MAGIC = {b"ftrt": "TensorRT", b"vtrt": "TensorRT-RTX"}


def inspect_engine(path: Path) -> dict:
    if path.is_dir():
        raise BadInputError(f"{path} is a directory, not an engine")
    if not path.is_file():
        raise BadInputError(f"engine not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in _ENGINE_MAGIC:  # as a garbage .onnx is exit 2, so is a garbage .engine
        raise BadInputError(f"{path} is not a TensorRT engine: it starts with {magic!r}, not a TensorRT "
                            f"(ftrt) or TensorRT-RTX (vtrt) header")
    info = {"artifact": str(path), "kind": "tensorrt-engine", "size_bytes": path.stat().st_size,
            "header": _ENGINE_MAGIC[magic]}
    facts = sidecar.read(path)
    if facts is None:
        # an engine from trtexec or another tool is valid; only what the file itself says is known,
        # because deserializing an engine needs the runtime version that built it and a GPU
        return {**info, "sidecar": None, "note": f"no sidecar {sidecar.sidecar_path(path).name} (not built by "
                "lndeploy build): runtime version, GPU targets, inputs and profiles are not recorded"}
    recorded = (facts.get("engine") or {}).get("size_bytes")
    if recorded is not None and recorded != info["size_bytes"]:
        info["note"] = (f"the sidecar describes another engine ({recorded} bytes, this file has "
                        f"{info['size_bytes']}): rebuild it, or the facts below are not this engine's")
    return {**info, **facts}


def inspect_onnx(model, name: str = "") -> dict:
    graphs = list(plugin_spec.iter_graphs(model.graph))
    ops = collections.Counter(n.op_type for g in graphs for n in g.node)
    return {
        "artifact": name,
        "kind": "onnx",
        "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [_value(v) for v in graph_inputs(model)],
        "outputs": [_value(v) for v in model.graph.output],
        "normalization_nodes": [_norm_node(n, where) for g, where in _graphs_with_owner(model.graph)
                                for n in g.node if n.op_type in _NORM_OPS],
        "precision": _precision(model, graphs),
        "plugins": sorted({f"{n.domain}::{n.op_type}" for g in graphs for n in g.node
                           if n.domain not in ("", "ai.onnx", "com.microsoft")}),
        "local_functions": [f"{f.domain}::{f.name}" for f in model.functions],
        "op_histogram": dict(ops.most_common()),
        "loops": [op for op in ("Scan", "Loop") if ops.get(op)],
        "primitive_norm_hint": primitive_norm_hint(ops),
    }


def _value(value) -> dict:
    from lndeploy.onnxfile import value_kind

    kind = value_kind(value)
    if kind != "tensor":  # e.g. a sequence of tensors from a scripted loop: no dims of its own
        inner = value.type.sequence_type.elem_type.tensor_type.elem_type if kind == "sequence" else None
        label = f"sequence<{_ELEM.get(inner, inner)}>" if inner else kind
        return {"name": value.name, "dtype": label, "shape": [], "dynamic": [], "kind": kind}
    t = value.type.tensor_type
    if not t.HasField("shape"):  # declared without a shape: any rank, not a scalar
        return {"name": value.name, "dtype": _ELEM.get(t.elem_type, str(t.elem_type)), "shape": None,
                "dynamic": [], "kind": kind}
    dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in t.shape.dim]
    return {"name": value.name, "dtype": _ELEM.get(t.elem_type, str(t.elem_type)), "shape": dims,
            "dynamic": [i for i, d in enumerate(dims) if isinstance(d, str)]}


def _graphs_with_owner(graph, owner: str | None = None):
    """(graph, owner) for the main graph (owner None) and every subgraph, owner being e.g. "Scan body"
    or "If then_branch": an LN inside an If is not in a loop, and TensorRT treats the two differently."""
    import onnx

    yield graph, owner
    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                yield from _graphs_with_owner(sub, f"{node.op_type} {attr.name}")


def _norm_node(node, owner: str | None) -> dict:
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items() if k != "body"}
    form = "plugin" if plugin_spec.is_plugin_node(node) else "native"
    return {"name": node.name, "op_type": node.op_type, "form": form, "in_subgraph": owner is not None,
            "subgraph_of": owner, "attributes": attrs, "inputs": list(node.input),
            "outputs": list(node.output)}


def _precision(model, graphs) -> dict:
    """Element types of the weights and of every Cast target: what a strongly typed engine will use.
    ``dominant`` is the float type holding the most weight *elements*, not counting weights that only
    normalization nodes read: an fp16 plan keeps every LN an fp32 island, and an LN over (C,H,W) can
    hold more gain and bias elements than all the fp16 convolutions together."""
    weights = collections.Counter(_ELEM.get(i.data_type, str(i.data_type)) for g in graphs for i in g.initializer)
    elements, norm_elements = collections.Counter(), collections.Counter()
    for g in graphs:
        norm_only = _read_only_by_norms(g)
        constants = [(n.output[0], a.t) for n in g.node if n.op_type == "Constant" for a in n.attribute
                     if a.HasField("t")]
        # older exporters keep weights in Constant nodes
        for name, init in [(i.name, i) for i in g.initializer] + constants:
            kind = _ELEM.get(init.data_type)
            if kind in _FLOATS:
                count = 1
                for d in init.dims:
                    count *= d
                (norm_elements if name in norm_only else elements)[kind] += count
    all_elements = elements + norm_elements
    io_floats = collections.Counter(_ELEM.get(v.type.tensor_type.elem_type) for v in
                                    list(model.graph.input) + list(model.graph.output))
    io_floats = {k: n for k, n in io_floats.items() if k in _FLOATS}
    casts = collections.Counter()
    for g in graphs:
        for n in g.node:
            if n.op_type == "Cast":
                to = next((a.i for a in n.attribute if a.name == "to"), None)
                casts[_ELEM.get(to, str(to))] += 1
    # no float weights (scale and bias as graph inputs, as in ONNX's own LN test models): the I/O types say it
    # a graph of LNs only: their weights are all there is
    counts = elements or norm_elements or io_floats
    main = max(counts, key=counts.get) if counts else "fp32"
    return {"weights": dict(weights), "weight_elements": dict(all_elements), "casts_to": dict(casts),
            "dominant": main}


def _read_only_by_norms(graph) -> set[str]:
    """Names that normalization nodes read and nothing else does (their scale and bias)."""
    readers = collections.defaultdict(set)
    for node in graph.node:
        for name in node.input:
            readers[name].add(node.op_type)
    return {name for name, ops in readers.items() if ops <= set(_NORM_OPS)}


def artifact_form(path) -> dict:
    """``{"ln": native|plugin, "precision": fp32|fp16|bf16, "opset": int|None}`` of an ONNX file or
    an lndeploy-built engine (from its sidecar; {} for an engine without one)."""
    path = Path(path)
    if sidecar.is_engine(path):
        try:
            facts = sidecar.read(path)
        except BadInputError:  # a sidecar lndeploy did not write tells nothing of the form
            return {}
        if facts is None:
            return {}
        label = (facts.get("precision") or {}).get("label")
        return {"ln": "plugin" if facts.get("plugins") else "native",
                "precision": label if label in ("fp32", "fp16", "bf16") else None,
                "opset": (facts.get("source_onnx") or {}).get("opset")}
    from lndeploy.onnxfile import load_model

    model = load_model(path, load_external_data=False)
    graphs = list(plugin_spec.iter_graphs(model.graph))
    dominant = _precision(model, graphs)["dominant"]
    return {"ln": "plugin" if plugin_spec.plugin_nodes(model) else "native",
            "precision": dominant if dominant in ("fp32", "fp16", "bf16") else None,
            "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)}


def format_text(info: dict) -> str:
    lines = [f"{info['artifact']} ({info['kind']})"]
    if info["kind"] != "onnx":
        for key, value in info.items():
            if key in ("artifact", "kind"):
                continue
            if isinstance(value, list) and len(json.dumps(value)) > 100:
                lines.append(f"  {key}:")
                lines += [f"    {json.dumps(item)}" for item in value]
            else:
                lines.append(f"  {key}: {json.dumps(value)}")
        return "\n".join(lines)
    lines.append(f"  opsets: {info['opsets']}")
    for role in ("inputs", "outputs"):
        for v in info[role]:
            shape = "any shape (none declared)" if v["shape"] is None else v["shape"]
            lines.append(f"  {role[:-1]} {v['name']}: {v['dtype']} {shape}")
    # '?' is a dim with neither a size nor a name: dynamic, but not tied to any other dim
    dynamic = list(dict.fromkeys(v["shape"][i] if v["shape"][i] != "?"
                                 else f"{unnamed_dim_label(v['name'], i)} (unnamed)"
                                 for v in info["inputs"] for i in v["dynamic"]))
    lines.append(f"  dynamic dims: {', '.join(dynamic) if dynamic else 'none (static shapes)'}")
    norms = info["normalization_nodes"]
    lines.append(f"  normalization nodes: {len(norms)}")
    for n in norms:
        where = f" (in {n['subgraph_of']})" if n.get("subgraph_of") else ""
        stats = [name for name, out in zip(("Mean", "InvStdDev"), n.get("outputs", [])[1:]) if out]
        extra = f", also outputs {' and '.join(stats)}" if stats and n["op_type"] == "LayerNormalization" else ""
        lines.append(f"    {n['op_type']} [{n['form']}] axis={n['attributes'].get('axis', -1)} "
                     f"epsilon={n['attributes'].get('epsilon', 1e-5):g}{extra}{where}")
    lines.append(f"  precision: {info['precision']['dominant']} weights {info['precision']['weights']}")
    lines.append(f"  plugins: {', '.join(info['plugins']) or 'none'}")
    if info.get("primitive_norm_hint"):
        lines.append(f"  hint: {info['primitive_norm_hint']}")
    if info["loops"]:
        lines.append(f"  loops: {', '.join(info['loops'])}")
    for side in info.get("external_data", []):
        lines.append(f"  external data: {side['file']}{'' if side['present'] else ' (MISSING)'}")
    return "\n".join(lines)
