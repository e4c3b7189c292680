"""Get a model ready for the rules: opset >= 17, an IR version that fits it, shapes inferred."""

from __future__ import annotations

from lndeploy.plugin_spec import iter_graphs

MIN_OPSET = 17


def rule_modules():
    from lndeploy.passes.fuse import (cast, channel_first, layer_norm, ln_bias, ln_scale, rms_norm, tf_layer_norm,
                                      unflatten)

    return (layer_norm, channel_first, tf_layer_norm, rms_norm, cast, ln_scale, ln_bias, unflatten)


def has_op(model, *op_types: str) -> bool:
    return any(n.op_type in op_types for g in iter_graphs(model.graph) for n in g.node)


def prepare(model, opset: int | None, notes: list):
    """A copy of ``model`` at ``opset`` (default: its own, at least 17) with inferred shapes."""
    import onnx

    from lndeploy.onnxfile import opset_version

    current = opset_version(model)
    target = opset if opset is not None else max(current, MIN_OPSET)
    work = onnx.ModelProto()
    work.CopyFrom(model)
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

    try:
        converted = version_converter.convert_version(model, target)
        notes.append(f"converted from opset {current} to {target} ({why})")
        return converted
    except Exception as err:  # the converter raises several unrelated types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        for entry in model.opset_import:
            if entry.domain in ("", "ai.onnx"):
                entry.version = target
        notes.append(f"onnx's version converter failed ({first}); raised the opset import "
                     f"from {current} to {target} without conversion")
        return model


def _infer_shapes(model, notes: list):
    import onnx

    from lndeploy import plugin_spec

    plugin_spec.register_schema()  # plugin nodes already in the graph must not stop inference
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as err:  # unknown ops, inconsistent declared shapes
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        notes.append(f"shape inference failed ({first}); patterns that need ranks are left as they are")
        return model
