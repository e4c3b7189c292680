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


def drop_identities(model) -> int:
    """Remove ``y = Identity(x)`` where y is no graph output (its uses read x), in an onnx_ir model and
    its subgraphs: x and Identity(x) are one value to the math but two to a pattern, so an Identity
    between the ops of a LayerNorm hides it (ONNX Runtime drops them too). Returns how many went.
    Not onnx_ir's IdentityEliminationPass: where y is a graph output it renames x, and in a Scan body
    whose state output also feeds such an Identity that lost the state (measured)."""
    dropped = 0
    for node in list(model.graph.all_nodes()):
        if node.op_type != "Identity" or node.domain not in ("", "ai.onnx") or node.outputs[0].is_graph_output():
            continue
        if node.inputs[0] is None:
            continue
        node.outputs[0].replace_all_uses_with(node.inputs[0])
        node.graph.remove(node, safe=True)
        dropped += 1
    return dropped


def layer_norm_below_opset_17(model) -> bool:
    from lndeploy.onnxfile import opset_version

    return opset_version(model) < MIN_OPSET and has_op(model, "LayerNormalization")


def prepare(model, opset: int | None, notes: list):
    """A copy of ``model`` at ``opset`` (default: its own, at least 17) with inferred shapes."""
    import onnx

    from lndeploy.onnxfile import opset_version, sort_nodes, sorted_note

    current = opset_version(model)
    target = opset if opset is not None else max(current, MIN_OPSET)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    notes.extend(sorted_note(name) for name in sort_nodes(work.graph))
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
