"""Error budgets: how far an fp16/bf16 artifact may be from fp32 PyTorch (``check --budget auto|fixed``).

``fixed`` gates at the tolerance (SPEC section 4: 1e-2 for fp16/bf16, or ``--atol``). ``auto`` (the default
for fp16/bf16 unless ``--atol`` is given) asks PyTorch how much error the precision itself costs on this
model: the model runs a second time in that precision, on the very inputs of the check, and its error
against fp32 PyTorch is ``reference_error``. The artifact passes when every element is within

    limit = max(atol, K * reference_error)

so a model that PyTorch itself cannot run to 1e-2 in bf16 (a ViT, Swin or Llama: docs/budget.md) is not
failed for the precision, while an artifact that loses far more than the precision explains still is.

The reduced-precision run is ``torch.autocast("cpu", dtype)`` over the fp32 model. Measured against the
other candidate, a deep copy with weights and inputs cast and LayerNorm upcast to fp32, autocast is the
closer match to lndeploy's plans (lndeploy/passes/precision.py: matmuls and convolutions in fp16/bf16,
LayerNorm, sums and softmax in fp32, as autocast does): the artifact/reference error ratio is 0.95-1.04
on the zoo transformer and 1.01 on the ViT with autocast, 0.19 and 0.38 with the cast copy, whose
residual stream is rounded after every block (every number: docs/budget.md).

``K = 3`` is measured: correct plans reach at most 2.0 x PyTorch's autocast error (a `transformers`
Llama in bf16, whose RMS norm the plan computes partly in bf16; ViT 1.0, Swin 0.65, the overflow model's
fp16 plan 0.9, the zoo LSTM in fp16 1.75), and the naive fp16 conversion of ``models/overflow.py`` (LN
statistics in fp16) is over 1000 x. The reference error is one number per check: the largest over every
float output and every input set (integer outputs are compared exactly, as always).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lndeploy import parity
from lndeploy.errors import BadInputError

MODES = ("auto", "fixed")
K = 3.0
REDUCED = ("fp16", "bf16")


@dataclass
class Budget:
    """The gate of one check. ``tolerance`` is what ``lndeploy.parity`` compares with."""

    mode: str
    precision: str
    atol: float
    rtol: float | None = None
    k: float | None = None
    reference_error: float | None = None
    measured: bool = False
    notes: list = field(default_factory=list)

    @property
    def limit(self) -> float:
        if self.reference_error is None:
            return self.atol
        return max(self.atol, self.k * self.reference_error)

    @property
    def tolerance(self) -> parity.Tolerance:
        return parity.Tolerance(self.limit, self.rtol)

    @property
    def pending(self) -> bool:
        """Auto, and PyTorch's own reduced-precision run has not been measured yet."""
        return self.mode == "auto" and not self.measured

    def measure(self, spec, samples) -> None:
        """PyTorch's own error in ``precision`` over ``samples`` (``(sizes, feed)`` pairs: the check's)."""
        self.measured = True
        if self.precision not in REDUCED:
            self.notes.append(f"--budget auto: {self.precision} has no reduced precision to measure; "
                              f"the tolerance atol {self.atol:g} applies")
            return
        error, why = reduced_precision_error(spec, self.precision, samples)
        if why:
            self.notes.append(f"--budget auto: {why}; the tolerance atol {self.atol:g} applies")
            return
        self.reference_error = error

    def to_dict(self) -> dict:
        return {"mode": self.mode, "atol": self.atol, "reference_error": self.reference_error, "limit": self.limit,
                "k": self.k}


def plan(mode: str | None, precision: str, tol: parity.Tolerance, atol_given: bool) -> Budget:
    """The budget for a check at ``tol``: ``mode`` as asked, else auto for fp16/bf16 when the user gave no
    ``--atol`` (an explicit atol is a fixed gate unless ``--budget auto`` says otherwise)."""
    if mode is None:
        mode = "auto" if precision in REDUCED and not atol_given else "fixed"
    if mode not in MODES:
        raise BadInputError(f"--budget must be one of {', '.join(MODES)}, got {mode!r}")
    k = K if mode == "auto" else None
    return Budget(mode, precision, tol.atol, tol.rtol, k=k, measured=mode == "fixed")


def reduced_precision_error(spec, precision: str, samples) -> tuple[float | None, str | None]:
    """Max abs error of PyTorch under ``torch.autocast`` in ``precision`` against fp32 PyTorch, over the
    float outputs of ``samples``, through ``lndeploy.parity``: ``(error, None)``, or ``(None, why)`` where
    PyTorch cannot give one (the run raises, or is NaN/inf where fp32 is finite)."""
    import numpy as np
    import torch

    from lndeploy.exporter.verify import flatten_outputs

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]

    def run(feed):
        tensors = {k: torch.from_numpy(v) for k, v in feed.items()}
        with torch.inference_mode():
            expected = flatten_outputs(spec.call(tensors))
            with torch.autocast("cpu", dtype=dtype):
                reduced = flatten_outputs(spec.call(tensors))
        floats = [i for i, value in enumerate(expected) if np.asarray(value).dtype.kind == "f"]
        return ({f"output {i}": reduced[i] for i in floats}, {f"output {i}": expected[i] for i in floats})

    try:
        outcome = parity.run_parity(samples, run, parity.Tolerance(float("inf")))
    except Exception as err:  # an op autocast sends to a dtype it has no CPU kernel for
        return None, f"PyTorch cannot run the model under {precision} autocast ({type(err).__name__}: {err})"
    if outcome.error:
        return None, f"PyTorch's own {precision} run differs from fp32 beyond measure ({outcome.error})"
    errors = [stats["max_abs"] for stats in outcome.outputs.values()]
    return (max(errors) if errors else 0.0), None
