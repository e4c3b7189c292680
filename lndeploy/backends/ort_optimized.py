"""An ONNX Runtime-only variant of a graph, fused by a maintained library, used only where proven equal.

The exported ONNX stays standard, because TensorRT and every other runtime must read it. For ONNX
Runtime alone, onnxscript's ``ort_fusions`` (maintained with ONNX Runtime by Microsoft) rewrite
attention written as plain ops (MatMul -> Div -> Softmax -> MatMul, the way ``torch.onnx`` exports a
hand-written block) into ``com.microsoft.MultiHeadAttention``, a residual Add + LayerNormalization into
``SkipLayerNormalization``, and Erf-GELU after a bias into ``BiasGelu``. Those are contrib ops that only
ONNX Runtime runs, so the result is made in memory when an ORT session is created (or saved by the
caller as a separate artifact), never written over the portable model.

ONNX Runtime's own ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")`` was tried
first: on the zoo transformer it fuses SkipLayerNormalization and BiasGelu but finds no attention (it
matches BERT's separate Q/K/V projections, not a packed QKV projection), so onnxscript's fusions are
the ones used here.

Proof before use: both graphs run on the same generated inputs (every dynamic dim varied, see
:mod:`lndeploy.inputs`) and every output of the fused graph must lie within ``atol`` (max abs, on
every element) of the plain graph's: 1e-4 for fp32 graphs, 1e-2 where the graph holds fp16/bf16
(SPEC section 4). Otherwise the plain graph is returned and the report says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

FP32_ATOL = 1e-4
HALF_ATOL = 1e-2


@dataclass
class OptimizationReport:
    """Whether the fused graph is used (``applied``), what was fused, and the evidence."""

    applied: bool
    reason: str
    library: str = ""
    fusions: dict = field(default_factory=dict)  # fusion name -> count (non-zero only)
    max_abs: float | None = None  # worst |fused - plain| over all outputs and samples
    atol: float = FP32_ATOL
    samples: list = field(default_factory=list)  # input shapes checked, one dict per sample

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def optimize_for_ort(model, feeds: list | None = None, *, atol: float | None = None,
                     threads: int | None = None):
    """``model`` (ModelProto or path) -> ``(model_proto, OptimizationReport)``.

    Returns the fused graph when at least one fusion applied and its outputs match the plain graph's
    on ``feeds`` (a list of name -> numpy dicts; generated from the graph's inputs when None) within
    ``atol``; otherwise the plain graph, with the reason in the report. The input is never modified.
    """
    import onnx

    if not isinstance(model, onnx.ModelProto):
        from lndeploy.onnxfile import load_model

        model = load_model(model)
    atol = atol if atol is not None else (HALF_ATOL if _has_half_types(model) else FP32_ATOL)
    try:
        fused, fusions, library = _fuse(model)
    except Exception as err:  # a fusion library bug must not stop a benchmark or a server
        return model, OptimizationReport(False, f"fusion failed, plain graph used: {_first_line(err)}", atol=atol)
    if not fusions:
        return model, OptimizationReport(False, "nothing to fuse: plain graph used", library, atol=atol)
    feeds = feeds if feeds is not None else generated_feeds(model)
    report = OptimizationReport(False, "", library, fusions, atol=atol,
                                samples=[{k: list(v.shape) for k, v in f.items()} for f in feeds])
    try:
        report.max_abs = _max_abs_difference(model, fused, feeds, threads)
    except Exception as err:
        report.reason = f"fused graph does not run in ONNX Runtime, plain graph used: {_first_line(err)}"
        return model, report
    if not report.max_abs <= atol:  # also catches NaN
        report.reason = f"fused graph differs by {report.max_abs:.3g} > {atol:g} (max abs): plain graph used"
        return model, report
    report.applied = True
    report.reason = f"fused graph matches the plain graph within {atol:g} (max abs {report.max_abs:.3g})"
    return fused, report


def _fuse(model):
    """onnxscript's ORT fusions on a copy: -> (ModelProto, {fusion: count}, library label)."""
    import onnx_ir as ir
    import onnxscript
    from onnxscript.rewriter.ort_fusions import optimize_for_ort as fuse

    # the fusions log shape-inference failures on contrib ops at WARNING; they are expected and harmless
    quiet = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        ir_model, counts = fuse(ir.from_proto(model))
        fused = ir.to_proto(ir_model)
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    fusions = {name: int(n) for name, n in counts.items() if n}
    return fused, fusions, f"onnxscript {onnxscript.__version__} (rewriter.ort_fusions)"


def generated_feeds(model, seed: int = 0) -> list:
    """Inputs for the proof: one feed per combination of dynamic-dim sizes (lndeploy.inputs' grid)."""
    from lndeploy import inputs

    specs = input_specs(model)
    return [feed for _, feed in inputs.schedule(specs, samples=None, seed=seed)]


def input_specs(model) -> list:
    """InputSpecs from the graph's inputs (initializers excluded); unnamed dynamic dims get a name."""
    import numpy as np
    import onnx

    from lndeploy.inputs import InputSpec

    initializers = {i.name for i in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or f"{value.name}_dim{i}")
                      for i, d in enumerate(tensor.shape.dim))
        specs.append(InputSpec(value.name, dtype, shape, 0.0, 1.0))
    return specs


def _max_abs_difference(plain, fused, feeds: list, threads: int | None) -> float:
    import numpy as np

    from lndeploy.backends.onnxruntime import OrtSession

    a, b = OrtSession(plain, threads=threads), OrtSession(fused, threads=threads)
    worst = 0.0
    for feed in feeds:
        out_a, out_b = a.run(feed), b.run(feed)
        for name, ref in out_a.items():
            got = out_b[name]
            if got.shape != ref.shape:
                return float("inf")
            if not ref.size:
                continue
            got, ref = got.astype(np.float64), ref.astype(np.float64)
            if (np.isnan(got) != np.isnan(ref)).any():  # NaN only where the plain graph has NaN too
                return float("nan")
            worst = max(worst, float(np.nanmax(np.abs(got - ref), initial=0.0)))
    return worst


def _has_half_types(model) -> bool:
    import onnx

    half = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    if any(t.data_type in half for t in model.graph.initializer):
        return True
    values = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    return any(v.type.tensor_type.elem_type in half for v in values)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
