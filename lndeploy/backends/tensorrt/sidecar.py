"""The JSON sidecar ``OUT.engine.json`` written next to every engine, and its checks at load time.

An engine only runs on the runtime version that built it and on the GPUs it was built for, and
nothing in the engine file says so in a way a person can read. The sidecar does::

    format            "lndeploy-engine/1"
    source_onnx       path, sha256 (of the .onnx file), onnx_opset
    runtime           name (tensorrt | tensorrt-rtx), version
    targets           RTX: compute capabilities ["sm86", ...]; full TensorRT: the build GPU {name, sm}
    profiles          per input min/opt/max shapes, and per dynamic dim label [min, opt, max]
    precision         from the ONNX types (float element types of weights and casts) plus the
                      network's LayerNorm layers with their input/output types
    plugins           plugin ids used, and how they run (aot kernel in the engine / python creator)
    engine_layers     per-layer types of the built engine when the build log told them, else null
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lndeploy.errors import BadInputError, UnavailableError

FORMAT = "lndeploy-engine/1"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # what trtexec, Polygraphy and lndeploy build name engines
ONNX_FLOAT_TYPES = {1: "float32", 10: "float16", 16: "bfloat16", 11: "float64"}


def is_engine(path) -> bool:
    """An engine file by its name (its contents need the runtime that built it and a GPU)."""
    return Path(str(path)).suffix in ENGINE_SUFFIXES


def sidecar_path(engine_path) -> Path:
    return Path(str(engine_path) + ".json")


def read(engine_path) -> dict | None:
    """The sidecar of ``engine_path``, or None when there is none (an engine built by other tools)."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    try:
        facts = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise BadInputError(f"{path} is not readable JSON ({err}); rebuild the engine with lndeploy build") from err
    if not isinstance(facts, dict) or facts.get("format") != FORMAT:
        raise BadInputError(f"{path} is not an lndeploy engine sidecar (format {FORMAT!r} expected)")
    return facts


def check_compatible(facts: dict, runtime, gpu: dict, engine_path) -> None:
    """Refuse, in one line, an engine built by another runtime or version, or for another GPU."""
    built = facts.get("runtime", {})
    rebuild = f"rebuild it here with: lndeploy build {facts.get('source_onnx', {}).get('path', 'MODEL.onnx')}"
    if built.get("name") != runtime.name or built.get("version") != runtime.version:
        raise UnavailableError(f"{engine_path} was built with {built.get('name')} {built.get('version')}, "
                               f"this machine has {runtime.name} {runtime.version}; {rebuild}")
    targets = facts.get("targets", {})
    sm = f"sm{gpu['sm']}"
    if runtime.is_rtx:
        allowed = targets.get("compute_capabilities", [])
        if sm not in allowed:
            raise UnavailableError(f"{engine_path} was built for {', '.join(allowed) or 'no GPU'}, this GPU "
                                   f"({gpu['name']}) is {sm}; {rebuild} --arch {sm}")
    elif targets.get("gpu", {}).get("sm") not in (None, gpu["sm"]):
        raise UnavailableError(f"{engine_path} was built on {targets['gpu'].get('name')} "
                               f"(sm{targets['gpu'].get('sm')}), this GPU ({gpu['name']}) is {sm}; {rebuild}")


def onnx_precision(model) -> dict:
    """Float element types the graph computes in: weights, Cast targets, graph inputs and outputs."""
    from lndeploy import plugin_spec

    seen = {}

    def note(elem, where):
        name = ONNX_FLOAT_TYPES.get(elem)
        if name:
            seen.setdefault(name, set()).add(where)

    for graph in plugin_spec.iter_graphs(model.graph):
        for tensor in graph.initializer:
            note(tensor.data_type, "weights")
        for node in graph.node:
            for attr in node.attribute:
                if node.op_type == "Cast" and attr.name == "to":
                    note(attr.i, "casts")
    for value in list(model.graph.input) + list(model.graph.output):
        note(value.type.tensor_type.elem_type, "io")
    reduced = [t for t in ("float16", "bfloat16") if t in seen]
    label = ("fp16" if reduced == ["float16"] else "bf16" if reduced == ["bfloat16"] else
             "mixed" if reduced else "fp32")
    return {"label": label, "float_types": {k: sorted(v) for k, v in sorted(seen.items())}}


_LAYER_LINE = re.compile(r"^\s*Name: (?P<name>.*?), LayerType: (?P<type>[^,]*),(?P<rest>.*)$")


def parse_engine_layers(messages) -> list[dict] | None:
    """Per-layer facts of the built engine from a verbose build log (``ProfilingVerbosity.DETAILED``).

    TensorRT-RTX logs one ``Layers:`` message with one line per engine layer:
    ``Name: N, LayerType: T, Inputs: [ {.. Datatype: Float ..} ], Constants: [..], Outputs: [..],
    TacticName: .., StreamId: .., Metadata: [ONNX Layer: node]``. Returns None when no such message
    was logged (the format is not a stable API).
    """
    for _severity, text in messages:
        if not text.lstrip().startswith("Layers:"):
            continue
        layers = []
        for line in text.splitlines():
            m = _LAYER_LINE.match(line)
            if m:
                layers.append(_layer_fields(m))
        return layers
    return None


def _layer_fields(m) -> dict:
    rest = m.group("rest")
    inputs = _section(rest, "Inputs: [", "], Constants:")
    outputs = _section(rest, "Outputs: [", "], TacticName:")
    meta = rest.split("Metadata:", 1)[1].strip() if "Metadata:" in rest else ""
    return {"name": m.group("name"), "type": m.group("type").strip(),
            "input_types": _types(inputs), "output_types": _types(outputs),
            "onnx_nodes": re.findall(r"ONNX Layer: ([^\]]+)", meta)}


def _section(text: str, start: str, end: str) -> str:
    if start not in text:
        return ""
    body = text.split(start, 1)[1]
    return body.split(end, 1)[0] if end in body else body


def _types(section: str) -> list[str]:
    names = {"Float": "float32", "Half": "float16", "BFloat16": "bfloat16", "Int64": "int64", "Int32": "int32",
             "Bool": "bool", "Int8": "int8", "UInt8": "uint8"}
    return [names.get(t, t.lower()) for t in re.findall(r"Datatype: (\w+)", section)]
