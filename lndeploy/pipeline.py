"""The public steps that need a runtime from a later layer, wired here and nowhere else.

The exporter and the graph passes sit below the backends (README "Layout"): they verify what they write
but import no runtime. This thin module passes one in: export verification runs on ONNX Runtime's CPU
provider (a bf16 plan on ONNX's reference evaluator, since ONNX Runtime's CPU provider has no bf16
MatMul/Gemm/Add kernels). ``lndeploy.export`` is ``export`` here.
"""

from __future__ import annotations


def verification_runner(model, precision: str = "fp32"):
    """The runner export verification uses: a ``lndeploy.backends.base.Runner`` over ``model``."""
    if precision == "bf16":
        from lndeploy.backends.reference import ReferenceSession

        return ReferenceSession(model)
    from lndeploy.backends.onnxruntime import OrtSession

    return OrtSession(model, providers=["CPUExecutionProvider"])


def export(model, output=None, **options):
    """``lndeploy.exporter.export`` verified on ``verification_runner`` (see its docstring for options)."""
    from lndeploy.exporter import export as export_model

    options.setdefault("open_runner", verification_runner)
    return export_model(model, output, **options)
