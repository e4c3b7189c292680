"""Parity check: the PyTorch original against a deployed artifact, on generated inputs, via Polygraphy.

Polygraphy's ``Comparator`` runs both runners on the same inputs and ``SimpleCompareFunc`` compares
every output element-wise. PyTorch runs second, so relative error divides by PyTorch's output. The
gate is max abs error <= atol on every element (SPEC section 4); with ``rtol`` given, an element also
passes when its relative error is within ``rtol``. Inputs vary every dynamic dim (``lndeploy.inputs``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lndeploy.errors import BadInputError

DEFAULT_ATOL = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 1e-2}


@dataclass
class CheckResult:
    passed: bool
    backend: str
    provider: str
    atol: float
    rtol: float | None
    artifact: str
    samples: list = field(default_factory=list)  # [{"sizes":…, "shapes": {input: shape}, "passed": bool}]
    outputs: dict = field(default_factory=dict)  # name -> {max_abs, max_rel, mean_abs, worst_sample}
    skipped: list = field(default_factory=list)  # sizes PyTorch itself cannot run, with the reason
    precision: str = "fp32"
    ln: str = "native"

    @property
    def worst(self) -> tuple[str, dict] | None:
        if not self.outputs:
            return None
        return max(self.outputs.items(), key=lambda kv: _nan_high(kv[1]["max_abs"]))

    def summary(self) -> str:
        name, stats = self.worst or ("-", {"max_abs": 0.0})
        verdict = "PASSED" if self.passed else "FAILED"
        return (f"parity {verdict}: worst output {name!r} max abs error {stats['max_abs']:.3g} "
                f"(tolerance atol {self.atol:g}) over {len(self.samples)} samples on {self.backend} "
                f"[{self.provider}]")

    def to_report(self) -> dict:
        return {
            "passed": self.passed,
            "backend": self.backend,
            "provider": self.provider,
            "artifact": self.artifact,
            "precision": self.precision,
            "ln": self.ln,
            "tolerance": {"atol": self.atol, "rtol": self.rtol},
            "samples": self.samples,
            "skipped_samples": self.skipped,
            "outputs": self.outputs,
            "reference": "pytorch (eager, fp32, CPU)",
        }


def _nan_high(value: float) -> float:
    return float("inf") if value != value else value


def check(model, *, onnx=None, engine=None, backend: str | None = None, atol: float | None = None,
          rtol: float | None = None, samples: int | None = None, report=None, ln: str = "native",
          precision: str = "fp32", opset: int = 18, seed: int = 0, debug: bool = False) -> CheckResult:
    """Compare ``model`` (a model-file reference or ``ModelSpec``) with its deployed artifact.

    Without ``onnx`` or ``engine`` the model is exported first (``ln``, ``precision``, ``opset``).
    ``report``: a JSON file to write (SPEC section 2 fields). Returns a ``CheckResult``; the caller
    decides what a failure means (the CLI exits 1).
    """
    from lndeploy import modelfile
    from lndeploy.check.compare import compare

    if onnx is not None and engine is not None:
        raise BadInputError("give either --onnx or --engine, not both")
    spec = model if isinstance(model, modelfile.ModelSpec) else modelfile.load(model)
    artifact = onnx or engine
    backend = backend or ("tensorrt" if engine is not None else "onnxruntime")
    tol = DEFAULT_ATOL[precision] if atol is None else atol
    with tempfile.TemporaryDirectory(prefix="lndeploy-check-") as tmp:
        if artifact is None:
            from lndeploy.export import export

            artifact = os.path.join(tmp, "model.onnx")
            export(spec, artifact, ln=ln, precision=precision, opset=opset, debug=debug)
        elif not Path(artifact).is_file():
            raise BadInputError(f"artifact not found: {artifact}")
        result = compare(spec, str(artifact), backend, tol, rtol, samples, seed, debug)
    result.artifact = str(onnx or engine or f"(exported in memory: ln={ln}, {precision}, opset {opset})")
    result.precision, result.ln = precision, ln
    if report is not None:
        from lndeploy.fileio import write_json_atomic

        write_json_atomic(report, result.to_report())
    return result
