"""An ONNX Runtime-only variant of a graph, fused by a maintained library, used only where proven equal.

The exported ONNX stays standard, because TensorRT and every other runtime must read it. For ONNX
Runtime alone, onnxscript's ``ort_fusions`` (maintained with ONNX Runtime by Microsoft) rewrite
attention written as plain ops (MatMul -> Div -> Softmax -> MatMul, the way ``torch.onnx`` exports a
hand-written block) into ``com.microsoft.MultiHeadAttention`` (``Attention`` for BERT's separate
Q/K/V projections) and Erf-GELU after a bias into ``BiasGelu``. Their residual Add +
LayerNormalization -> ``SkipLayerNormalization`` fusion is left out: its CPU kernel is slower than
the two ops (below). The fused ops are contrib ops that only ONNX Runtime runs, so the result is
made in memory when an ORT session is created (or saved by the caller as a separate artifact),
never written over the portable model.

ONNX Runtime's own ``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")`` was tried
first: on the zoo transformer it fuses SkipLayerNormalization and BiasGelu but finds no attention (it
matches BERT's separate Q/K/V projections, not a packed QKV projection), so onnxscript's fusions are
the ones used here.

Session options, measured on this 2-core CPU (docs/bench.md): ORT's defaults (ORT_ENABLE_ALL, memory
arena, sequential execution, spinning workers) beat every variant tried (no arena, EXTENDED level,
no spinning, parallel execution) except one: ORT's own ``SkipLayerNormFusion``, which turns a
residual Add + LayerNormalization into ``SkipLayerNormalization``; on ORT 1.31's CPU provider that
kernel is 3.5-7x slower than the two ops it replaces, so :func:`tuned_session` turns it off on CPU.

Proof before use: both graphs run on the same generated inputs (every dynamic dim varied, see
:mod:`lndeploy.inputs`) and every output of the fused graph must lie within ``atol`` (max abs, on
every element) of the plain graph's: 1e-4 for fp32 graphs, 1e-2 where the graph holds fp16/bf16
(SPEC section 4). Otherwise the plain graph is returned and the report says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from lndeploy import parity

# the fused graph answers for the artifact, so it is held to the artifact's gate (lndeploy.parity's table)
FP32_ATOL = parity.tolerance("fp32").atol
HALF_ATOL = parity.tolerance("fp16").atol
# ORT graph transformers that slow CPU inference down here: SkipLayerNormFusion makes the slow
# SkipLayerNormalization kernel out of Add + LayerNormalization (module note). Kept on other providers.
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def disabled_optimizers(providers=None) -> tuple:
    """The ORT optimizers to turn off for a session on ``providers`` (default: lndeploy's choice)."""
    from lndeploy.backends.onnxruntime import default_providers

    providers = list(providers or default_providers())
    return CPU_DISABLED_OPTIMIZERS if providers[0] == "CPUExecutionProvider" else ()


def tuned_session(model, threads: int | None = None, providers=None):
    """An ``OrtSession`` for serving or benchmarking: ORT's defaults minus :func:`disabled_optimizers`."""
    from lndeploy.backends.onnxruntime import OrtSession

    return OrtSession(model, providers, threads, disabled_optimizers=disabled_optimizers(providers))


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

    # the fusions log shape-inference failures on contrib ops at WARNING; they are expected and harmless
    quiet = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        ir_model = ir.from_proto(model)
        counts = _fusion_pipeline(ir_model)
        fused = ir.to_proto(ir_model)
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    fusions = {name: int(n) for name, n in counts.items() if n}
    return fused, fusions, f"onnxscript {onnxscript.__version__} (rewriter.ort_fusions, no skip-normalization)"


def _fusion_pipeline(model) -> dict:
    """onnxscript's ``ort_fusions.optimize_for_ort`` (0.7), step by step, in place, minus one fusion.

    Left out: Add + LayerNormalization -> ``com.microsoft.SkipLayerNormalization``. ONNX Runtime
    1.31's CPU kernel for that op is 3.5-7x slower than the Add and LayerNormalization it replaces
    (measured here: (512, 128) 170 us vs 48 us, (4096, 768) 7.9 ms vs 1.8 ms, 2 threads; see
    docs/bench.md), so on CPU it undoes what the attention fusion gains.
    """
    import onnx_ir.passes.common as common
    from onnxscript.optimizer import optimize
    from onnxscript.rewriter import rewrite
    from onnxscript.rewriter.ort_fusions import ORT_PATTERN_REWRITE_RULES, shape_optimization
    from onnxscript.rewriter.ort_fusions.attention import fuse_attention
    from onnxscript.rewriter.ort_fusions.bias_gelu import fuse_bias_gelu
    from onnxscript.rewriter.ort_fusions.erfgelu import fuse_erfgelu
    from onnxscript.rewriter.ort_fusions.gelu import fuse_gelu
    from onnxscript.rewriter.ort_fusions.mha import fuse_mha1, fuse_mha2
    from onnxscript.rewriter.ort_fusions.mha_bias import fuse_mha_bias
    from onnxscript.rewriter.ort_fusions.mha_scale import fuse_mha_scale
    from onnxscript.rewriter.ort_fusions.sdpa import fuse_sdpa
    from onnxscript.rewriter.ort_fusions.sdpa_via_mha import replace_sdpa_by_mha
    from onnxscript.rewriter.rules.common import _gemm_to_matmul_add

    rewrite(model, [_gemm_to_matmul_add.gemm_to_matmul_add_rule])
    common.ShapeInferencePass()(model)
    optimize(model)
    shape_optimization.rules.apply_to_model(model)
    optimize(model)
    counts = {"erf_gelu": fuse_erfgelu(model)}
    common.CommonSubexpressionEliminationPass()(model)
    counts["sdpa"] = fuse_sdpa(model, apply_shape_inference=True)
    for name, step in (("mha1", fuse_mha1), ("mha2", fuse_mha2), ("mha_scale", fuse_mha_scale)):
        counts[name] = step(model)
    if counts["mha1"] or counts["mha2"]:
        counts["mha_bias"] = fuse_mha_bias(model)
        counts["attention"] = fuse_attention(model)
    counts["gelu"] = fuse_gelu(model)
    counts["bias_gelu"] = fuse_bias_gelu(model)
    counts["sdpa_via_mha"] = replace_sdpa_by_mha(model)
    optimize(model)  # inlines what no fusion consumed, drops dead nodes
    rewrite(model, ORT_PATTERN_REWRITE_RULES)
    common.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=1)(model)
    common.RemoveInitializersFromInputsPass()(model)
    common.ShapeInferencePass()(model)
    return counts


def generated_feeds(model, seed: int = 0) -> list:
    """Inputs for the proof: one feed per combination of dynamic-dim sizes (lndeploy.inputs' grid)."""
    from lndeploy import inputs

    specs = inputs.specs_from_onnx(model)
    return [feed for _, feed in inputs.schedule(specs, samples=None, seed=seed)]


def _max_abs_difference(plain, fused, feeds: list, threads: int | None) -> float:
    """Worst max abs error of the fused graph against the plain one over ``feeds`` (lndeploy.parity:
    NaN where one side has NaN/inf the other does not, inf where a shape differs)."""
    from lndeploy.backends.onnxruntime import OrtSession

    with OrtSession(plain, threads=threads) as a, OrtSession(fused, threads=threads) as b:
        result = parity.run_parity((({}, feed) for feed in feeds), lambda feed: (b.run(feed), a.run(feed)),
                                   parity.Tolerance(0.0))
    if any("shape" in (entry["error"] or "") for entry in result.outputs.values()):
        return float("inf")
    worst = result.worst
    return worst[1]["max_abs"] if worst else 0.0


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
