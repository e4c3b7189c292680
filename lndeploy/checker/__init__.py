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
    error: str | None = None  # the artifact failed to run on an input PyTorch runs
    notes: list = field(default_factory=list)  # how inputs were paired or pinned to the artifact's sizes

    @property
    def worst(self) -> tuple[str, dict] | None:
        if not self.outputs:
            return None
        return max(self.outputs.items(), key=lambda kv: _nan_high(kv[1]["max_abs"]))

    def summary(self) -> str:
        if self.error:
            return f"parity FAILED: {self.error}"
        name, stats = self.worst or ("-", {"max_abs": 0.0})
        verdict = "PASSED" if self.passed else "FAILED"
        rtol = f", rtol {self.rtol:g}" if self.rtol is not None else ""
        return (f"parity {verdict}: worst output {name!r} max abs error {stats['max_abs']:.3g} "
                f"(tolerance atol {self.atol:g}{rtol}) over {len(self.samples)} samples on {self.backend} "
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
            "error": self.error,
            "notes": self.notes,
            "reference": "pytorch (eager, fp32, CPU)",
        }


def _nan_high(value: float) -> float:
    return float("inf") if value != value else value


def check(model, *, onnx=None, engine=None, backend: str | None = None, atol: float | None = None,
          rtol: float | None = None, samples: int | None = None, report=None, ln: str | None = None,
          precision: str | None = None, opset: int | None = None, seed: int = 0, debug: bool = False,
          example_inputs=None, dynamic_axes=None) -> CheckResult:
    """Compare ``model`` with its deployed artifact on generated inputs.

    ``model``: a model-file reference, a ``ModelSpec``, or a ``torch.nn.Module`` with
    ``example_inputs``. Without ``onnx`` or ``engine`` the model is exported first (``ln``,
    ``precision``, ``opset``; defaults native, fp32, 18). With an artifact, its own LN form and
    precision are read from it (and set the default tolerance); options that contradict it are refused.
    ``report``: a JSON file to write (SPEC section 2 fields). Returns a ``CheckResult``; the caller
    decides what a failure means (the CLI exits 1).
    """
    from lndeploy import modelfile
    from lndeploy.checker.compare import compare

    if onnx is not None and engine is not None:
        raise BadInputError("give either --onnx or --engine, not both")
    if atol is not None and not atol >= 0:
        raise BadInputError(f"atol must be >= 0, got {atol}")
    if rtol is not None and not rtol >= 0:
        raise BadInputError(f"rtol must be >= 0, got {rtol}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise BadInputError(f"seed must be an integer from 0 to 2**32-1, got {seed!r}")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise BadInputError(f"samples must be a positive integer, got {samples!r}")
    if report is not None:  # before minutes of export and inference, not after
        from lndeploy.outpaths import model_file, prepare_outputs

        prepare_outputs({"--report": report}, {"MODEL": model_file(model), "--onnx": onnx, "--engine": engine,
                                               "the engine's sidecar": f"{engine}.json" if engine else None})
    spec = modelfile.resolve(model, example_inputs, dynamic_axes)
    artifact = onnx or engine
    if artifact is not None:
        if not Path(artifact).is_file():
            raise BadInputError(f"artifact not found: {artifact}")
        ln, precision = _artifact_form(artifact, ln, precision, opset)
    ln, precision, opset = ln or "native", precision or "fp32", opset or 18
    backend = backend or ("tensorrt" if engine is not None else "onnxruntime")
    tol = DEFAULT_ATOL[precision] if atol is None else atol
    export_notes = []
    with tempfile.TemporaryDirectory(prefix="lndeploy-check-") as tmp:
        if artifact is None:
            from lndeploy.exporter import export

            artifact = os.path.join(tmp, "model.onnx")
            export_notes = export(spec, artifact, ln=ln, precision=precision, opset=opset, debug=debug).notes
        result = compare(spec, str(artifact), backend, tol, rtol, samples, seed, debug)
    result.notes[:0] = export_notes
    if onnx is not None or engine is not None:
        result.notes += _unstable_weights_note(model, spec, result)
    result.artifact = str(onnx or engine or f"(exported in memory: ln={ln}, {precision}, opset {opset})")
    result.precision, result.ln = precision, ln
    if report is not None:
        from lndeploy.fileio import write_json_atomic

        write_json_atomic(report, result.to_report())
    return result


def _unstable_weights_note(model, spec, result) -> list[str]:
    """A failed check of an artifact exported in another process often means the model file builds
    different weights every time (an unseeded ``build()``): build it once more and compare. Only on
    failure, and only for a model file (an in-memory module is the very one that was exported)."""
    if result.passed or result.error or not isinstance(model, (str, os.PathLike)):
        return []
    import torch

    from lndeploy import modelfile

    again = modelfile.load(model).module.state_dict()
    for name, tensor in spec.module.state_dict().items():
        other = again.get(name)
        if other is None or other.shape != tensor.shape or not torch.equal(other, tensor):
            return [f"{model} builds different weights on each call ({name!r} differs between two builds): "
                    "an artifact exported in another process cannot match it; seed build() "
                    "(torch.manual_seed) or load saved weights"]
    return []


def _artifact_form(artifact, ln, precision, opset) -> tuple[str | None, str | None]:
    """The artifact's own LN form and precision; an option that says otherwise is a usage error."""
    from lndeploy.inspection import artifact_form

    form = artifact_form(artifact)
    for option, given, found in (("--ln", ln, form.get("ln")), ("--precision", precision, form.get("precision")),
                                 ("--opset", opset, form.get("opset"))):
        if given is not None and found is not None and given != found:
            raise BadInputError(f"{option} {given} contradicts the artifact, which is {found}: export options "
                                f"apply only when check exports the model itself")
    return ln or form.get("ln"), precision or form.get("precision")
