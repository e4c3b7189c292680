"""PyTorch -> ONNX, LayerNorm as one node, verified before it is written."""

from __future__ import annotations

from dataclasses import dataclass, field

from lndeploy.errors import BadInputError

LN_MODES = ("native", "plugin")
PRECISIONS = ("fp32", "fp16", "bf16")
DEFAULT_OPSET = 18


@dataclass
class ExportResult:
    model: object  # onnx.ModelProto, as written
    path: str | None
    ln: str
    precision: str
    opset: int
    verification: list = field(default_factory=list)  # VerifiedRun per size checked
    tolerance: object = None  # the lndeploy.parity.Tolerance verification gated at
    notes: list = field(default_factory=list)


def export(model, output=None, *, ln: str = "native", precision: str = "fp32", opset: int = DEFAULT_OPSET,
           verify: bool = True, debug: bool = False, example_inputs=None, dynamic_axes=None,
           atol: float | None = None, rtol: float | None = None, open_runner=None, traced=None,
           apply_passes=None) -> ExportResult:
    """Export ``model`` to ONNX: a model-file reference, a loaded ``ModelSpec``, or a
    ``torch.nn.Module`` with ``example_inputs`` (and optional ``dynamic_axes``, as in a model file).

    ``ln="native"`` writes one ``LayerNormalization`` per LayerNorm; ``ln="plugin"`` one lndeploy plugin
    node. ``precision`` fp16/bf16 plans reduced precision in the graph's types, LN statistics in fp32.
    The model is verified (checker, dynamic dims, a runtime vs PyTorch at two sizes, gated at ``atol``
    and ``rtol`` or the precision's tolerance) before ``output`` is written, atomically.
    ``open_runner(model, precision) -> Runner`` runs the verification: the exporter imports no backend,
    so ``lndeploy.export`` (``lndeploy.pipeline``) passes ONNX Runtime in. Likewise the graph passes
    (plugin rewrite, precision plan) sit above the exporter: ``apply_passes(model, ln, precision) ->
    (model, notes)`` is passed in for any LN form but native or precision but fp32. ``traced``: what ``trace``
    returned for this model and opset, reused (copied) instead of running torch's exporter again: the
    LN form and the precision are graph passes over the same trace (``check --config`` exports each
    model once for all its variants).
    """
    from lndeploy import modelfile
    from lndeploy.exporter import dims
    from lndeploy.exporter import verify as verification

    if ln not in LN_MODES:
        raise BadInputError(f"--ln must be one of {LN_MODES}, got {ln!r}")
    if precision not in PRECISIONS:
        raise BadInputError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    if verify and open_runner is None:
        raise TypeError("verification needs open_runner (lndeploy.export passes ONNX Runtime), or verify=False")
    if (ln, precision) != ("native", "fp32") and apply_passes is None:
        raise TypeError("a plugin or reduced-precision export needs apply_passes (lndeploy.export passes them)")
    from lndeploy import parity

    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not 0 <= value < float("inf"):
            raise BadInputError(f"--{name} must be a finite number >= 0, got {value}")
    tol = parity.tolerance(precision, atol=atol, rtol=rtol)
    if output is not None:  # before the export: a clash with the model file or an unwritable folder
        from lndeploy.outpaths import model_file, prepare_outputs

        prepare_outputs({"-o": output}, {"MODEL": model_file(model)})
    spec = modelfile.resolve(model, example_inputs, dynamic_axes)
    if traced is None:
        onnx_model = trace(spec, opset, debug)
    else:
        import onnx

        onnx_model = onnx.ModelProto()
        onnx_model.CopyFrom(traced)  # the passes below rewrite it in place
    result = ExportResult(onnx_model, None, ln, precision, opset)
    result.notes += dims.name_output_dims(onnx_model, spec, verification.second_sizes(spec))
    result.notes += _no_layer_norm_notes(onnx_model, ln)
    if apply_passes is not None:
        onnx_model, notes = apply_passes(onnx_model, ln, precision)
        result.notes += notes
    result.model = onnx_model
    # a bf16 plan may raise the opset (bf16 Conv needs opset 22): report what was written
    result.opset = next((o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if verify:
        result.verification = verification.verify(onnx_model, spec, precision, open_runner=open_runner, tol=tol)
        result.tolerance = tol
    if output is not None:
        from lndeploy.onnxfile import save_model

        save_model(onnx_model, output)
        result.path = str(output)
    return result


def _no_layer_norm_notes(model, ln: str) -> list[str]:
    """A model without any LayerNormalization node (RMS norm, a hand-written LN) exports fine, but the
    user asked for a LayerNorm tool: say so, rather than write a file with nothing of the kind in it."""
    from collections import Counter

    from lndeploy import plugin_spec
    from lndeploy.onnxfile import primitive_norm_hint

    ops = Counter(n.op_type for g in plugin_spec.iter_graphs(model.graph) for n in g.node)
    if ops.get("LayerNormalization"):
        return []
    hint = primitive_norm_hint(ops)
    notes = ["the exported model has no LayerNormalization node" + (f" ({hint})" if hint else "")]
    if ln == "plugin":
        notes.append("--ln plugin: no LayerNorm to replace, so the file has no plugin node")
    return notes


def trace(spec, opset: int = DEFAULT_OPSET, debug: bool = False):
    """torch's exporter on a loaded ``ModelSpec``: the ``onnx.ModelProto`` every LN form and precision
    of ``export`` starts from."""
    from lndeploy.exporter import torch_export

    return torch_export.run_exporter(spec, opset, debug=debug, custom_translation_table=_translations())


def _translations():
    """Map lndeploy's custom op, where a model uses it, to a standard LayerNormalization."""
    try:
        from lndeploy.exporter.custom_op_translation import translation_table
    except ImportError:
        return None
    return translation_table()
