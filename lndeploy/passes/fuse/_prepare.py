"""Get a model ready for the rules: opset >= 17, an IR version that fits it, shapes inferred."""

from __future__ import annotations

from lndeploy.errors import first_line
from lndeploy.plugin_spec import MIN_OPSET, iter_graphs

HELD_DOMAIN = "lndeploy.fuse.held"


def rule_modules():
    from lndeploy.passes.fuse import (cast, channel_first, layer_norm, ln_bias, ln_scale, ln_stats, rms_norm,
                                      tf_layer_norm, unflatten)

    return (layer_norm, channel_first, tf_layer_norm, rms_norm, cast, ln_scale, ln_bias, unflatten, ln_stats)


def has_op(model, *op_types: str) -> bool:
    return any(n.op_type in op_types for g in iter_graphs(model.graph) for n in g.node)


def layer_norm_below_opset_17(model) -> bool:
    from lndeploy.onnxfile import opset_version

    return opset_version(model) < MIN_OPSET and has_op(model, "LayerNormalization")


def prepare(model, opset: int | None, notes: list):
    """A copy of ``model`` at ``opset`` (default: its own, at least 17) with inferred shapes."""
    import onnx

    from lndeploy.onnxfile import opset_version

    current = opset_version(model)
    target = opset if opset is not None else max(current, MIN_OPSET)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    sort_nodes(work.graph, notes)
    if target > current:
        why = f"--opset {opset}" if opset is not None else f"LayerNormalization needs {MIN_OPSET}"
        work = _convert(work, current, target, why, notes)
    if model.ir_version < 4:
        _initializers_not_inputs(work.graph)
    required = onnx.helper.find_min_ir_version_for(list(work.opset_import), ignore_unknown=True)
    work.ir_version = max(work.ir_version, required)
    return _infer_shapes(work, notes)


def _initializers_not_inputs(graph) -> None:
    """Before IR 4 every initializer had to be listed as a graph input: a constant all the same (ONNX
    Runtime does not let them be overridden). From IR 4 on such a listing means "a default the caller
    may override", so the listing goes before the IR version is raised, and eps stays a constant."""
    names = {init.name for init in graph.initializer}
    kept = [value for value in graph.input if value.name not in names]
    del graph.input[:]
    graph.input.extend(kept)


def _convert(model, current: int, target: int, why: str, notes: list):
    """onnx's version converter (it rewrites ops whose signature changed, e.g. ReduceMean at 18);
    where it gives up, only the import is raised, which the ONNX Runtime check then vouches for."""
    from onnx import version_converter

    held = _hold_layer_norms(model)
    try:
        converted = version_converter.convert_version(model, target)
        notes.append(f"converted from opset {current} to {target} ({why})")
        return _release_layer_norms(converted, held)
    except Exception as err:  # the converter raises several unrelated types
        _release_layer_norms(model, held)
        first = first_line(err)
        for entry in model.opset_import:
            if entry.domain in ("", "ai.onnx"):
                entry.version = target
        notes.append(f"onnx's version converter failed ({first}); raised the opset import "
                     f"from {current} to {target} without conversion")
        return model


def _hold_layer_norms(model) -> bool:
    """Park default-domain LayerNormalization nodes below opset 17 in a domain of their own while
    the converter runs: ONNX Runtime's optimizer writes them at the file's opset (its contrib
    kernel, the same attributes and math as opset 17's), where onnx has no schema for them."""
    nodes = [n for g in iter_graphs(model.graph) for n in g.node
             if n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx")]
    for node in nodes:
        node.domain = HELD_DOMAIN
    if nodes:
        model.opset_import.append(onnx_opset(HELD_DOMAIN, 1))
    return bool(nodes)


def _release_layer_norms(model, held: bool):
    if held:
        for node in (n for g in iter_graphs(model.graph) for n in g.node if n.domain == HELD_DOMAIN):
            node.domain = ""
        kept = [o for o in model.opset_import if o.domain != HELD_DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return model


def onnx_opset(domain: str, version: int):
    import onnx

    return onnx.helper.make_opsetid(domain, version)


def sort_nodes(graph, notes: list) -> None:
    """Put the nodes of ``graph`` in topological order, as ONNX Runtime does on load (the ONNX checker
    only complains): shape inference and the rules read producers before their uses. Names a node's
    subgraphs read from this graph count as its inputs. Left as it is where there is a cycle."""
    produced = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    needs = [{produced[name] for name in _reads(node) if name in produced} - {i} for i, node in enumerate(graph.node)]
    order, done = [], set()
    while len(order) < len(graph.node):
        ready = [i for i in range(len(graph.node)) if i not in done and needs[i] <= done]
        if not ready:
            return  # a cycle: not a graph ONNX Runtime loads either; the rules will find nothing
        order.append(ready[0])
        done.add(ready[0])
    if order != sorted(order):
        nodes = [graph.node[i] for i in order]
        del graph.node[:]
        graph.node.extend(nodes)
        notes.append(f"sorted the nodes of graph {graph.name!r} topologically (the file's order was not)")


def _reads(node) -> set:
    names = set(node.input)
    for attr in node.attribute:
        for sub in list(attr.g.node if attr.HasField("g") else []) + [n for g in attr.graphs for n in g.node]:
            names |= _reads(sub)
    return names


def _infer_shapes(model, notes: list):
    import onnx

    from lndeploy import plugin_spec

    plugin_spec.register_schema()  # plugin nodes already in the graph must not stop inference
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as err:  # unknown ops, inconsistent declared shapes
        first = first_line(err)
        notes.append(f"shape inference failed ({first}); patterns that need ranks are left as they are")
        return model
