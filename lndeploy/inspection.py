"""What a user needs to know about an artifact: I/O with dynamic dims, LN nodes and their form,
precision, plugins. ONNX files are read directly; engines through their JSON sidecar."""

from __future__ import annotations

import collections
import json
from pathlib import Path

from lndeploy import plugin_spec
from lndeploy.errors import BadInputError

_ELEM = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64", 7: "int64", 6: "int32", 9: "bool", 3: "int8", 2: "uint8"}
_NORM_OPS = ("LayerNormalization", "RMSNormalization", "SkipLayerNormalization", plugin_spec.OP_TYPE)


def inspect_artifact(path) -> dict:
    path = Path(path)
    if path.suffix in (".engine", ".plan", ".trt"):
        return inspect_engine(path)
    from lndeploy.onnxfile import load_model

    return inspect_onnx(load_model(path), str(path))


def inspect_engine(path: Path) -> dict:
    if not path.is_file():
        raise BadInputError(f"engine not found: {path}")
    sidecar = Path(str(path) + ".json")
    if not sidecar.is_file():
        raise BadInputError(f"{path} has no sidecar {sidecar.name}: it was not built by lndeploy build")
    try:
        facts = json.loads(sidecar.read_text())
    except (OSError, ValueError) as err:
        raise BadInputError(f"{sidecar} is not readable JSON: {err}") from err
    return {"artifact": str(path), "kind": "tensorrt-engine", "size_bytes": path.stat().st_size, **facts}


def inspect_onnx(model, name: str = "") -> dict:
    graphs = list(plugin_spec.iter_graphs(model.graph))
    ops = collections.Counter(n.op_type for g in graphs for n in g.node)
    return {
        "artifact": name,
        "kind": "onnx",
        "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [_value(v) for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer}],
        "outputs": [_value(v) for v in model.graph.output],
        "normalization_nodes": [_norm_node(n, g is not model.graph) for g in graphs for n in g.node
                                if n.op_type in _NORM_OPS],
        "precision": _precision(model, graphs),
        "plugins": sorted({f"{n.domain}::{n.op_type}" for g in graphs for n in g.node
                           if n.domain not in ("", "ai.onnx", "com.microsoft")}),
        "local_functions": [f"{f.domain}::{f.name}" for f in model.functions],
        "op_histogram": dict(ops.most_common()),
        "loops": [op for op in ("Scan", "Loop") if ops.get(op)],
        "primitive_norm_hint": _primitive_norm_hint(ops),
    }


def _primitive_norm_hint(ops) -> str | None:
    """ReduceMean with Sqrt (or Pow / Reciprocal) is how LayerNorm looks when written as primitive ops."""
    if ops.get("ReduceMean", 0) >= 2 and (ops.get("Sqrt") or ops.get("Pow") or ops.get("Reciprocal")):
        return (f"{ops['ReduceMean']} ReduceMean nodes with Sqrt/Pow: LayerNorm or RMS norm written as "
                f"primitive ops? `lndeploy fuse` makes each one node")
    return None


def _value(value) -> dict:
    t = value.type.tensor_type
    dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in t.shape.dim]
    return {"name": value.name, "dtype": _ELEM.get(t.elem_type, str(t.elem_type)), "shape": dims,
            "dynamic": [i for i, d in enumerate(dims) if isinstance(d, str)]}


def _norm_node(node, in_subgraph: bool) -> dict:
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items() if k != "body"}
    form = "plugin" if plugin_spec.is_plugin_node(node) else "native"
    return {"name": node.name, "op_type": node.op_type, "form": form, "in_subgraph": in_subgraph,
            "attributes": attrs, "inputs": list(node.input)}


def _precision(model, graphs) -> dict:
    """Element types of the weights and of every Cast target: what a strongly typed engine will use.
    ``dominant`` is the float type holding the most weight *elements* (an fp16 plan keeps its few LN
    gains fp32, but its matmul weights are fp16)."""
    weights = collections.Counter(_ELEM.get(i.data_type, str(i.data_type)) for g in graphs for i in g.initializer)
    elements = collections.Counter()
    for g in graphs:
        for init in g.initializer:
            kind = _ELEM.get(init.data_type)
            if kind in ("fp32", "fp16", "bf16"):
                count = 1
                for d in init.dims:
                    count *= d
                elements[kind] += count
    casts = collections.Counter()
    for g in graphs:
        for n in g.node:
            if n.op_type == "Cast":
                to = next((a.i for a in n.attribute if a.name == "to"), None)
                casts[_ELEM.get(to, str(to))] += 1
    main = max(elements, key=elements.get) if elements else "fp32"
    return {"weights": dict(weights), "weight_elements": dict(elements), "casts_to": dict(casts), "dominant": main}


def artifact_form(path) -> dict:
    """``{"ln": native|plugin, "precision": fp32|fp16|bf16, "opset": int|None}`` of an ONNX file or
    an lndeploy-built engine (from its sidecar; {} for an engine without one)."""
    path = Path(path)
    if path.suffix in (".engine", ".plan", ".trt"):
        sidecar = Path(str(path) + ".json")
        if not sidecar.is_file():
            return {}
        try:
            facts = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            return {}
        label = (facts.get("precision") or {}).get("label")
        return {"ln": "plugin" if facts.get("plugins") else "native",
                "precision": label if label in ("fp32", "fp16", "bf16") else None,
                "opset": (facts.get("source_onnx") or {}).get("opset")}
    from lndeploy.onnxfile import load_model

    model = load_model(path)
    graphs = list(plugin_spec.iter_graphs(model.graph))
    return {"ln": "plugin" if plugin_spec.plugin_nodes(model) else "native",
            "precision": _precision(model, graphs)["dominant"],
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
            lines.append(f"  {role[:-1]} {v['name']}: {v['dtype']} {v['shape']}")
    norms = info["normalization_nodes"]
    lines.append(f"  normalization nodes: {len(norms)}")
    for n in norms:
        where = " (in loop body)" if n["in_subgraph"] else ""
        lines.append(f"    {n['op_type']} [{n['form']}] axis={n['attributes'].get('axis', -1)} "
                     f"epsilon={n['attributes'].get('epsilon', 1e-5):g}{where}")
    lines.append(f"  precision: {info['precision']['dominant']} weights {info['precision']['weights']}")
    lines.append(f"  plugins: {', '.join(info['plugins']) or 'none'}")
    if info.get("primitive_norm_hint"):
        lines.append(f"  hint: {info['primitive_norm_hint']}")
    if info["loops"]:
        lines.append(f"  loops: {', '.join(info['loops'])}")
    return "\n".join(lines)
