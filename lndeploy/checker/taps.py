"""The ONNX side of ``check --layers``: which intermediate tensors to compare, and a graph that outputs them.

A *site* is one tensor of the ONNX graph that has a PyTorch counterpart: the output of a normalization
node (``LayerNormalization``, ``RMSNormalization``, lndeploy's plugin node), also inside Scan bodies,
or, with ``--layers all``, what leaves a module the exporter's metadata names. torch's dynamo exporter
writes on every node (README "How check decides", layer localisation):

* ``pkg.torch.onnx.name_scopes``: ``['', 'layers.1', 'layers.1.norm', 'layer_norm_2']`` (the root,
  the module path at each level, the op); nodes inside a Scan body carry only the op;
* ``pkg.torch.onnx.stack_trace``: the Python frames that made the node, the model's own file among them.

Nodes that passes add (precision casts) carry none; nodes of other exporters carry none either: such
sites have ``module=None`` and are paired with PyTorch's normalization modules by order
(:mod:`lndeploy.checker.layers`).
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lndeploy import plugin_spec

NORM_OPS = {("", "LayerNormalization"), ("ai.onnx", "LayerNormalization"), ("", "RMSNormalization"),
            ("ai.onnx", "RMSNormalization"), (plugin_spec.DOMAIN, plugin_spec.OP_TYPE)}
SCOPES, STACK = "pkg.torch.onnx.name_scopes", "pkg.torch.onnx.stack_trace"
TAP = "__lndeploy_tap"
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
_PACKAGE = str(Path(__file__).resolve().parents[1])  # lndeploy itself: its LayerNorm's frame is not the user's
FLOAT = 1  # onnx.TensorProto.FLOAT
_FLOATS = {1, 10, 11, 16}  # float, float16, double, bfloat16


@dataclass
class Site:
    node: str  # the ONNX node that computes it (name, or its output's name when unnamed)
    output: str  # the tensor compared with the module's output
    input: str | None  # the tensor compared with the module's input
    module: str | None  # dotted module path from the metadata; None: paired by order
    source: str | None  # "file:line" from the metadata
    norm: bool  # a normalization (first_divergence names the first of these that is over tolerance)
    order: float  # position in the main graph's topological order
    scan: int | None = None  # index of the main-graph Scan whose body computes it
    own: bool = True  # False: a functional norm inside a bigger module, whose hook sees something else


def is_norm(node) -> bool:
    return (node.domain, node.op_type) in NORM_OPS


def module_path(node) -> str | None:
    """The innermost module the node belongs to, or None (the root, a Scan body, no metadata)."""
    scopes = module_scopes(node)
    return scopes[-1] if scopes else None


def module_scopes(node) -> list[str]:
    raw = next((p.value for p in node.metadata_props if p.key == SCOPES), None)
    try:
        scopes = ast.literal_eval(raw) if raw else []
    except (ValueError, SyntaxError):
        return []
    if not isinstance(scopes, list) or not scopes or scopes[0] != "":
        return []  # a Scan body's node, or a node outside any module (shape helpers)
    return [s for s in scopes[1:-1] if isinstance(s, str) and s]


def source_line(node, depth: int | None = None) -> str | None:
    """Where the node's module is called. The exporter's stack trace holds one frame per module
    forward, outermost first, so a module ``depth`` levels below the root is called from frame
    ``depth - 1`` (``depth``: the node's own module's, unless given). Otherwise (a Scan body's node):
    the last frame outside site-packages and lndeploy (for a model that lives in site-packages, like
    ``transformers``: the last outside torch)."""
    frames = [f for f in _FRAME.findall(next((p.value for p in node.metadata_props if p.key == STACK), ""))
              if not f[0].startswith("<")]  # FX-generated code (<eval_with_key>) is nobody's source
    if not frames:
        return None
    depth = len(module_scopes(node)) if depth is None else depth
    if 0 < depth <= len(frames):
        path, line = frames[depth - 1]
        return f"{short_path(path)}:{line}"
    rules = (lambda p: "site-packages" not in p and not p.startswith(_PACKAGE),
             lambda p: f"{os.sep}torch{os.sep}" not in p and not p.startswith(_PACKAGE))
    for rule in rules:
        chosen = [f for f in frames if rule(f[0])]
        if chosen:
            path, line = chosen[-1]
            return f"{short_path(path)}:{line}"
    path, line = frames[-1]
    return f"{short_path(path)}:{line}"


def short_path(path: str) -> str:
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else path
    except (OSError, ValueError):
        return path


def find_sites(model, mode: str, norm_modules: set[str], types: dict) -> list[Site]:
    """Sites in topological order. ``mode``: ``norms`` (normalization nodes, and the modules in
    ``norm_modules`` that the metadata names, for norms written as primitive ops) or ``all`` (every
    module the metadata names, too). ``types``: :func:`float_types` of ``model``."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output if o}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    sites = []
    for index, node in enumerate(graph.node):
        if is_norm(node):
            sites.append(_norm_site(node, index, producers, consumers, outputs, norm_modules))
        elif node.op_type == "Scan":
            body = next(a.g for a in node.attribute if a.name == "body")
            norms = [n for n in body.node if is_norm(n)]
            sites += [Site(n.name or n.output[0], n.output[0], n.input[0], None, source_line(n), True,
                           index + (j + 1) / (len(norms) + 1), scan=index) for j, n in enumerate(norms)]
    taken = {s.module for s in sites if s.module}
    wanted = None if mode == "all" else norm_modules
    sites += _module_sites(graph, taken, wanted, norm_modules, consumers, outputs, types)
    return sorted(sites, key=lambda s: s.order)


def _norm_site(node, index: int, producers: dict, consumers: dict, outputs: set, norm_modules: set) -> Site:
    """The node's output and input, widened to its module's when the module wraps it in reshapes or
    casts of its own (a channel-first LN permutes around the node): what PyTorch's hook sees."""
    module = module_path(node)
    out, inp = node.output[0], node.input[0]
    if module and module not in norm_modules:  # F.layer_norm called in a block's forward
        return Site(node.name or out, out, inp, module, source_line(node), True, index, own=False)
    if module:
        def inside(other) -> bool:
            return other is not None and not is_norm(other) and module in module_scopes(other)

        while out not in outputs and len(consumers.get(out, [])) == 1 and inside(consumers[out][0]) \
                and len(consumers[out][0].output) == 1:
            out = consumers[out][0].output[0]
        while inside(producers.get(inp)) and producers[inp].input:
            inp = producers[inp].input[0]
    return Site(node.name or node.output[0], out, inp, module, source_line(node), True, index)


def _module_sites(graph, taken: set, wanted: set | None, norm_modules: set, consumers: dict,
                  outputs: set, types: dict) -> list[Site]:
    """One site per module named by the metadata (all of them when ``wanted`` is None): the last float
    tensor that leaves it, and the first that enters it from outside (not a weight or a constant)."""
    members: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for path in module_scopes(node):
            members.setdefault(path, []).append(index)
    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant"
                                                       for o in n.output}
    sites = []
    for path, indices in members.items():
        if path in taken or (wanted is not None and path not in wanted):
            continue
        inside = {id(graph.node[i]) for i in indices}
        leaving = [(i, o) for i in indices for o in graph.node[i].output
                   if o and is_float(types, o)
                   and (o in outputs or any(id(c) not in inside for c in consumers.get(o, [])))]
        produced = {o for i in indices for o in graph.node[i].output}
        entering = [x for i in indices for x in graph.node[i].input
                    if x and x not in produced and x not in constants and is_float(types, x)]
        if not leaving:
            continue
        at, out = leaving[-1]
        first = graph.node[indices[0]]
        sites.append(Site(graph.node[at].name or out, out, entering[0] if entering else None, path,
                          source_line(first, module_scopes(first).index(path) + 1), path in norm_modules, at))
    return sites


def float_types(model) -> dict[str, int]:
    """Element type of every typed tensor (shape inference over the main graph and its bodies)."""
    import onnx

    plugin_spec.register_schema()
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph shape inference cannot follow: untyped taps default to float
        inferred = model
    types = {}
    for graph in plugin_spec.iter_graphs(inferred.graph):
        for value in (*graph.input, *graph.output, *graph.value_info):
            if value.type.tensor_type.elem_type:
                types[value.name] = value.type.tensor_type.elem_type
    return types


def instrument(model, sites: list[Site], types: dict):
    """A copy of ``model`` that also outputs every site's tensors. Returns ``(model, taps)``; ``taps``
    maps ``(scan, tensor)`` to the output name that carries it (a graph input maps to itself: the feed
    has it). Tensors of a Scan body leave as extra scan outputs (stacked over the steps on axis 0)."""
    import onnx
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    present = {o.name for o in graph.output} | {i.name for i in graph.input}
    taps = {}
    for site in sites:
        for tensor in (site.output, site.input):
            key = (site.scan, tensor)
            if tensor is None or key in taps:
                continue
            elem = types.get(tensor, FLOAT)
            if site.scan is None:
                if tensor not in present:
                    graph.output.append(helper.make_tensor_value_info(tensor, elem, None))
                    present.add(tensor)
                taps[key] = tensor
                continue
            taps[key] = _carry_out(graph, graph.node[site.scan], tensor, elem)
    return out, taps


def _carry_out(graph, scan, tensor: str, elem: int) -> str:
    """Add ``tensor`` of the Scan's body as one more scan output (axis 0, forward), and that output to
    the graph's outputs. The Identity lets a body input (a carried state) leave too."""
    from onnx import helper

    body = next(a.g for a in scan.attribute if a.name == "body")
    inner = f"{tensor}{TAP}"
    body.node.append(helper.make_node("Identity", [tensor], [inner], name=f"{inner}_identity"))
    body.output.append(helper.make_tensor_value_info(inner, elem, None))
    outer = f"{scan.name or scan.output[0]}/{tensor}{TAP}"
    scan.output.append(outer)
    for attr in scan.attribute:
        if attr.name in ("scan_output_axes", "scan_output_directions"):
            attr.ints.append(0)
    graph.output.append(helper.make_tensor_value_info(outer, elem, None))
    return outer


def is_float(types: dict, name: str) -> bool:
    return types.get(name, FLOAT) in _FLOATS
