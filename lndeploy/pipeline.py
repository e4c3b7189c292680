"""The public steps that need a runtime from a later layer, wired here and nowhere else.

The exporter and the graph passes sit below the backends (README "Layout"): they verify what they write
but import no runtime. This thin module passes one in: export verification runs on ONNX Runtime's CPU
provider (a bf16 plan on ONNX's reference evaluator, since ONNX Runtime's CPU provider has no bf16
MatMul/Gemm/Add kernels), and ``fuse``'s on ONNX Runtime with graph optimisations off for both models.
``lndeploy.export`` and ``lndeploy.fuse`` are ``export`` and ``fuse`` here.
"""

from __future__ import annotations


def verification_runner(model, precision: str = "fp32"):
    """The runner export verification uses: a ``lndeploy.backends.base.Runner`` over ``model``."""
    if precision == "bf16":
        from lndeploy.backends.reference import ReferenceSession

        return ReferenceSession(model)
    from lndeploy.backends.onnxruntime import OrtSession

    return OrtSession(model, providers=["CPUExecutionProvider"])


def graph_passes(model, ln: str, precision: str):
    """The passes an export's LN form and precision ask for: ``(model, notes)``. The plugin rewrite
    first (its nodes then get their fp32 islands like LayerNormalization's), then the precision plan."""
    notes = []
    if ln == "plugin":
        from lndeploy.passes import ln_to_plugin

        model, report = ln_to_plugin.rewrite(model)
        notes += [f"LayerNormalization {name} kept: {why}" for name, why in report.skipped]
    if precision != "fp32":
        from lndeploy.passes.precision import plan_precision

        model = plan_precision(model, precision)
    return model, notes


def export(model, output=None, **options):
    """``lndeploy.exporter.export`` with the graph passes and verified on ``verification_runner`` (see
    its docstring for options)."""
    from lndeploy.exporter import export as export_model

    options.setdefault("open_runner", verification_runner)
    options.setdefault("apply_passes", graph_passes)
    return export_model(model, output, **options)


def rewrite_verification_opener():
    """What runs both sides of a graph rewrite's verification (``fuse``): ONNX Runtime on the CPU with
    graph optimisations OFF for both models (the graphs as written: ORT would otherwise fuse the input's
    primitive-op LayerNorm itself, and the comparison would measure ORT's rewrite, not fuse's). Once a
    model has no ORT kernel (a bf16 plan: NOT_IMPLEMENTED) or an IR version ORT cannot read, this and
    every later model run on ONNX's reference evaluator, so the two sides never run on different
    runtimes."""
    from lndeploy.backends.onnxruntime import OrtSession
    from lndeploy.backends.reference import ReferenceSession
    from lndeploy.errors import UnavailableError

    fallback = []

    def open_session(model):
        if not fallback:
            try:
                return OrtSession(model, providers=["CPUExecutionProvider"], optimize=False)
            except UnavailableError:
                fallback.append(True)
        return ReferenceSession(model)

    return open_session


def fuse(input, output=None, **options):
    """``lndeploy.passes.fuse.fuse`` verified on ``rewrite_verification_opener`` (see its docstring)."""
    from lndeploy.passes.fuse import fuse as fuse_model

    if options.get("verify", True):
        options.setdefault("open_session", rewrite_verification_opener())
    return fuse_model(input, output, **options)
