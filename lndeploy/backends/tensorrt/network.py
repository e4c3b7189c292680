"""ONNX -> TensorRT network, and what the network holds (the facts tests and the sidecar rely on).

Before parsing, the ONNX model is prepared in memory:

* a model-local function named like the plugin op (lndeploy's CPU reference for ONNX Runtime) is
  dropped, because TensorRT's parser may import that function instead of the plugin;
* for full TensorRT, plugin nodes get the attribute ``aot=1``, which tells the parser to create the
  ahead-of-time implementation of a Quickly Deployable Plugin (the engine then carries the kernel);
* when plugin nodes exist, lndeploy's plugin creator is registered with the runtime first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lndeploy import plugin_spec
from lndeploy.backends.tensorrt.runtime import Runtime, load
from lndeploy.errors import BadInputError, UnavailableError

DTYPE_NAMES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
               "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "float8", "INT4": "int4",
               "FP4": "float4", "E8M0": "e8m0"}
LOOP_LAYER_TYPES = ("TRIP_LIMIT", "RECURRENCE", "ITERATOR", "LOOP_OUTPUT")
PLUGIN_LAYER_TYPES = ("PLUGIN_V3", "PLUGIN_V2", "PLUGIN")


@dataclass(frozen=True)
class LayerInfo:
    """One network layer: type name (e.g. ``NORMALIZATION``), name, and its tensors' element types."""

    name: str
    type: str
    input_types: tuple
    output_types: tuple
    onnx_nodes: str = ""  # the parser's metadata: which ONNX node(s) the layer came from


@dataclass
class ParsedNetwork:
    """A parsed network. Keeps builder, parser and logger alive: the network borrows their memory."""

    runtime: Runtime
    builder: object
    network: object
    parser: object
    logger: object
    model: object  # the onnx.ModelProto as parsed
    plugin_nodes: int = 0
    notes: list = field(default_factory=list)

    def layers(self) -> list[LayerInfo]:
        return network_layers(self.network)

    def count(self, layer_type: str) -> int:
        return sum(1 for layer in self.layers() if layer.type == layer_type)


def make_logger(trt, verbose: bool = False):
    """A TensorRT ILogger that keeps every message (severity name, text) in ``.messages``."""

    class Collector(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages = []
            self.verbose = verbose

        def log(self, severity, msg):
            if self.verbose or severity not in (trt.ILogger.Severity.VERBOSE, trt.ILogger.Severity.INFO):
                self.messages.append((severity.name, str(msg)))

        def errors(self) -> list[str]:
            return [m for s, m in self.messages if s in ("ERROR", "INTERNAL_ERROR")]

    return Collector()


def prepare_model(onnx_path, runtime: Runtime):
    """Load and validate the ONNX file; adapt plugin nodes for ``runtime`` (see module doc).

    Returns (model, changed, notes): ``changed`` tells whether the in-memory model differs from the file.
    """
    from lndeploy.onnxfile import graph_inputs, load_model, non_tensor_inputs

    model = load_model(onnx_path)
    for name, kind in non_tensor_inputs(model):  # the parser would assert on the type, after printing
        raise UnavailableError(f"TensorRT takes tensor inputs only; input {name!r} of {onnx_path} is a {kind}")
    for value in graph_inputs(model):  # the parser fails later on, in an internal assertion
        if not value.type.tensor_type.HasField("shape"):
            raise BadInputError(f"TensorRT needs the rank of every input; input {value.name!r} of {onnx_path} is "
                                "declared without a shape (declare one in the model)")
    notes, changed = [], False
    kept = [f for f in model.functions if not (f.domain == plugin_spec.DOMAIN and f.name == plugin_spec.OP_TYPE)]
    if len(kept) != len(model.functions):
        del model.functions[:]
        model.functions.extend(kept)
        changed = True
        notes.append("dropped the model-local CPU reference function of the plugin op (TensorRT uses the plugin)")
    trimmed = drop_unused_ln_statistics(model)
    if trimmed:
        changed = True
        notes.append(f"{trimmed} LayerNormalization node(s) declared Mean/InvStdDev outputs that nothing reads: "
                     "dropped (TensorRT's parser accepts only Y)")
    nodes = plugin_spec.plugin_nodes(model)
    if nodes and not runtime.is_rtx:
        for node in nodes:
            if not any(a.name == "aot" for a in node.attribute):
                import onnx

                node.attribute.append(onnx.helper.make_attribute("aot", 1))
                changed = True
    return model, changed, notes


def drop_unused_ln_statistics(model) -> int:
    """Empty the optional Mean/InvStdDev outputs of LayerNormalization nodes where nothing reads them.

    Some exporters declare all three outputs even when only Y is used; TensorRT's parser refuses any
    LN node with a non-empty second or third output name. Names read by a node of any graph (a
    subgraph may read an outer name) or listed as graph outputs count as used. Returns the count.
    """
    used = set()
    for graph in plugin_spec.iter_graphs(model.graph):
        used.update(o.name for o in graph.output)
        for node in graph.node:
            used.update(node.input)
    trimmed = 0
    for graph in plugin_spec.iter_graphs(model.graph):
        for node in graph.node:
            if node.op_type != "LayerNormalization" or node.domain not in ("", "ai.onnx") or len(node.output) < 2:
                continue
            keep = list(node.output)
            while len(keep) > 1 and (not keep[-1] or keep[-1] not in used):
                keep.pop()
            if len(keep) < len(node.output):
                del node.output[len(keep):]
                trimmed += 1
    return trimmed


def parse_network(onnx_path, runtime: str | Runtime | None = None, *, verbose: bool = False) -> ParsedNetwork:
    """Parse ``onnx_path`` with the requested runtime; parser errors become one-line ``BadInputError``."""
    rt = runtime if isinstance(runtime, Runtime) else load(runtime)
    trt = rt.trt
    model, changed, notes = prepare_model(onnx_path, rt)
    count = len(plugin_spec.plugin_nodes(model))
    if count:
        from lndeploy.plugins.layernorm import trt_plugin

        trt_plugin.register(rt)
    logger = make_logger(trt, verbose)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, plugins=bool(count)))
    parser = trt.OnnxParser(network, logger)
    path = str(Path(onnx_path).resolve())
    if changed:
        ok = parser.parse(model.SerializeToString(), path)
    else:
        ok = parser.parse_from_file(path)
    if not ok:
        reason, unsupported = _parser_error(parser, logger)
        if unsupported:  # a valid ONNX model (the checker passed) that this runtime cannot run: exit 3
            raise UnavailableError(f"{rt.label} {rt.version} does not support {onnx_path}: {reason}")
        raise BadInputError(f"{rt.label}'s ONNX parser rejected {onnx_path}: {reason}")
    return ParsedNetwork(rt, builder, network, parser, logger, model, count, notes)


def _network_flags(trt, plugins: bool) -> int:
    """Strongly typed: the precision is the ONNX types (TensorRT 10 needs the flag; 11 and RTX ignore
    it or always are). With plugins, prefer their ahead-of-time implementation where TensorRT has one."""
    flags = 0
    members = trt.NetworkDefinitionCreationFlag.__members__
    if "STRONGLY_TYPED" in members:
        flags |= 1 << int(members["STRONGLY_TYPED"])
    if plugins and "PREFER_AOT_PYTHON_PLUGINS" in members:
        flags |= 1 << int(members["PREFER_AOT_PYTHON_PLUGINS"])
    return flags


def _parser_error(parser, logger) -> tuple[str, bool]:
    """The first parser error as one line, and whether it is an ``UNSUPPORTED_*`` code (the model is
    valid, this runtime lacks the feature) rather than an invalid graph."""
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        if err.node_name():
            where = f"node {err.node_name()!r} ({err.node_operator()})"
        elif err.node_operator():  # exporters often leave names empty: the index still finds the node
            where = f"node #{err.node()} ({err.node_operator()})"
        else:
            where = "the model"
        return f"{where}: {one_line(err.desc())}", err.code().name.startswith("UNSUPPORTED")
    errors = logger.errors()
    return (one_line(errors[0]) if errors else "no reason given"), False


def network_layers(network) -> list[LayerInfo]:
    """Every layer of ``network`` in order, with input/output element types (loop bodies included)."""
    out = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        inputs = []
        for j in range(layer.num_inputs):
            tensor = layer.get_input(j)
            inputs.append(dtype_name(tensor.dtype) if tensor is not None else None)
        outputs = tuple(dtype_name(layer.get_output_type(j)) for j in range(layer.num_outputs))
        metadata = getattr(layer, "metadata", "") or ""
        out.append(LayerInfo(layer.name, layer.type.name, tuple(inputs), outputs, str(metadata)))
    return out


def dtype_name(dtype) -> str:
    return DTYPE_NAMES.get(dtype.name, dtype.name.lower())


def summarize(layers: list[LayerInfo]) -> dict:
    """What a user relies on: LN layers and their types, plugin layers, loops, layer-type counts."""
    counts = {}
    for layer in layers:
        counts[layer.type] = counts.get(layer.type, 0) + 1
    ln = [{"name": l.name, "type": l.type, "input_type": (l.input_types or (None,))[0],
           "output_type": l.output_types[0] if l.output_types else None}
          for l in layers if l.type == "NORMALIZATION" or l.type in PLUGIN_LAYER_TYPES]
    return {"layer_counts": counts, "layernorm_layers": ln,
            "loops": sum(1 for l in layers if l.type == "TRIP_LIMIT")}


def one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:297] + "..."
