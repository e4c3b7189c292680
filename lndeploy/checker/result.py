"""``CheckResult``: what one parity check found, and its report fields (README "How check decides")."""

from __future__ import annotations

from dataclasses import dataclass, field

from lndeploy.parity import rtol_hint


@dataclass
class CheckResult:
    passed: bool
    backend: str
    provider: str
    atol: float
    rtol: float | None
    artifact: str
    samples: list = field(default_factory=list)  # [{"sizes":…, "shapes": {input: shape}, "passed": bool}]
    outputs: dict = field(default_factory=dict)  # name -> lndeploy.parity statistics merged over samples
    skipped: list = field(default_factory=list)  # sizes PyTorch itself cannot run, with the reason
    precision: str = "fp32"
    ln: str = "native"
    error: str | None = None  # the artifact failed to run on an input PyTorch runs
    notes: list = field(default_factory=list)  # how inputs were paired or pinned to the artifact's sizes
    sha256: str | None = None  # of the artifact file that ran
    plugin_impl: str | None = None  # what ran the plugin nodes; None without plugin nodes
    budget: dict = field(default_factory=dict)  # {mode, atol, reference_error, limit, k}: checker/budget.py
    first_divergence: dict | None = None  # {node, module, source, max_abs, input_max_abs, ...}
    layers: list = field(default_factory=list)  # [{node, module, max_abs, over_fraction, ...}] in graph order
    plots: list = field(default_factory=list)  # PNG paths written by --plots

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
        line = (f"parity {verdict}: worst output {name!r} max abs error {stats['max_abs']:.3g} "
                f"({self._gate(rtol)}) over {len(self.samples)} samples on {self.backend} [{self.provider}]")
        if not self.passed and stats.get("over_tolerance"):
            line += (f"; {stats['over_tolerance']} of {stats['elements']} elements over, worst at "
                     f"{stats['worst_index']} (sample {stats['worst_sample']}): {stats['worst_actual']:.6g} vs "
                     f"PyTorch {stats['worst_expected']:.6g}{rtol_hint(stats, self.rtol)}")
        return line

    def _gate(self, rtol: str) -> str:
        """The tolerance, or with ``--budget auto`` the limit and the PyTorch error it comes from."""
        ref = self.budget.get("reference_error") if self.budget else None
        if ref is None:
            return f"tolerance atol {self.atol:g}{rtol}"
        return (f"budget {self.budget['limit']:.3g} = max(atol {self.budget['atol']:g}, {self.budget['k']:g} x "
                f"PyTorch's own {self.precision} error {ref:.3g}){rtol}")

    def to_report(self) -> dict:
        return {
            "passed": self.passed,
            "exit_code": 0 if self.passed else 1,
            "backend": self.backend,
            "provider": self.provider,
            "artifact": {"path": self.artifact, "sha256": self.sha256},
            "precision": self.precision,
            "ln": self.ln,
            "plugin_impl": self.plugin_impl,
            "tolerance": {"atol": self.atol, "rtol": self.rtol},
            "budget": self.budget or {"mode": "fixed", "atol": self.atol, "reference_error": None,
                                      "limit": self.atol},
            "samples": self.samples,
            "skipped_samples": self.skipped,
            "outputs": self.outputs,
            "first_divergence": self.first_divergence,
            "layers": self.layers,
            "error": self.error,
            "notes": self.notes,
            "reference": "pytorch (eager, fp32, CPU)",
        }


def _nan_high(value) -> float:
    return float("inf") if value is None or value != value else value
