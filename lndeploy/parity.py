"""The one parity comparison: error statistics, the NaN/Inf rule, the tolerance table, the sample loop.

Every gate in lndeploy goes through here: export verification (ONNX vs PyTorch before a file is
written), fuse verification (rewritten graph vs its input), the ONNX Runtime fusion proof (ORT's fused
graph vs the plain one), bench's accuracy column and ``lndeploy check``. A numpy-only leaf, so every
layer may import it.

The rules (README "How check decides"):
- an element passes when ``|actual - expected| <= atol``, or, with ``rtol`` given, when
  ``|actual - expected| <= rtol * |expected|`` (Polygraphy's rule: abs OR rel);
- relative error divides by the reference (``expected``); over a zero reference it is 0 when the values
  are equal, else infinite;
- NaN or inf at the same element on both sides, with the same value, is equal: PyTorch itself gives NaN
  where a generated mask pads a whole row, and the artifact that repeats it is right. NaN or inf on one
  side only fails that element, and the output's ``max_abs`` is NaN (the report writes null);
- integer and bool outputs are compared exactly (their difference is counted like any other).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np

from lndeploy.errors import ParityError

PRECISIONS = ("fp32", "fp16", "bf16")
_ALIASES = {"float32": "fp32", "float64": "fp32", "float": "fp32", "double": "fp32",
            "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float | None = None

    def __str__(self) -> str:
        rtol = f", rtol {self.rtol:g}" if self.rtol is not None else ""
        return f"atol {self.atol:g}{rtol}"


# The one tolerance table: precision -> what is compared against -> Tolerance.
# "pytorch": an artifact against the PyTorch original (README "How check decides": max abs on every element; fp16/bf16
#   plans compute LN statistics in fp32). "rewrite": a graph rewritten by lndeploy or ONNX Runtime against
#   the graph it came from, same precision and same runtime, so much tighter, and relative to the output's
#   magnitude (a correct rewrite of a model whose outputs are in the hundreds moves them by ~1e-5).
TOLERANCES = {
    "fp32": {"pytorch": Tolerance(1e-4), "rewrite": Tolerance(1e-5, 1e-5)},
    "fp16": {"pytorch": Tolerance(1e-2), "rewrite": Tolerance(1e-2, 1e-3)},
    "bf16": {"pytorch": Tolerance(1e-2), "rewrite": Tolerance(1e-2, 1e-2)},
}


def precision_of(name: str) -> str:
    """``fp32``/``fp16``/``bf16`` for a precision or a numpy/ONNX dtype name (float64 gates as fp32)."""
    key = _ALIASES.get(str(name), str(name))
    if key not in TOLERANCES:
        raise ValueError(f"no tolerance for precision {name!r}; known: {', '.join(PRECISIONS)}")
    return key


def tolerance(precision: str = "fp32", against: str = "pytorch", atol: float | None = None,
              rtol: float | None = None) -> Tolerance:
    """The table's tolerance, with the caller's ``atol``/``rtol`` (a user's ``--atol``) taking precedence."""
    base = TOLERANCES[precision_of(precision)][against]
    return Tolerance(base.atol if atol is None else float(atol), base.rtol if rtol is None else float(rtol))


@dataclass
class OutputStats:
    """How one output of the artifact (``actual``) differs from the reference (``expected``)."""

    max_abs: float = 0.0
    max_rel: float = 0.0
    mean_abs: float = 0.0
    worst_index: list | None = None
    worst_actual: float | None = None
    worst_expected: float | None = None
    over_tolerance: int = 0  # elements that fail the tolerance (NaN/inf on one side included)
    elements: int = 0
    matched_nonfinite: int = 0  # NaN/inf on both sides, equal: counted as equal
    nonfinite_mismatch: int = 0  # NaN/inf on one side only
    error: str | None = None  # could not be compared (shape, missing), or NaN/inf on one side only

    @property
    def over_fraction(self) -> float:
        return self.over_tolerance / self.elements if self.elements else 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and self.over_tolerance == 0

    def to_dict(self) -> dict:
        return {**asdict(self), "over_fraction": self.over_fraction}


def _as_comparable(array) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.name == "bfloat16":  # ml_dtypes' numpy type: kind "V", but a float
        return array.astype(np.float32)
    return array


def compare_arrays(actual, expected, tol: Tolerance) -> OutputStats:
    """Element-wise statistics of ``actual`` against ``expected`` (the reference) under ``tol``."""
    actual, expected = _as_comparable(actual), _as_comparable(expected)
    if actual.shape != expected.shape:
        return _broken(f"shape {list(actual.shape)} differs from the reference's {list(expected.shape)}")
    if (actual.dtype.kind in "OSUV") or (expected.dtype.kind in "OSUV"):
        return _broken(f"dtype {actual.dtype} / {expected.dtype} cannot be compared numerically")
    stats = OutputStats(elements=int(expected.size))
    if not expected.size:
        return stats
    kind = np.complex128 if "c" in (actual.dtype.kind, expected.dtype.kind) else np.float64
    a, e = actual.astype(kind), expected.astype(kind)
    bad_a, bad_e = ~np.isfinite(a), ~np.isfinite(e)
    same = bad_a & bad_e & ((a == e) | (np.isnan(a) & np.isnan(e)))
    odd = (bad_a | bad_e) & ~same
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(bad_a | bad_e, 0.0, np.abs(a - e)).astype(np.float64)
        scale = np.abs(e).astype(np.float64)
        rel = np.where(diff == 0, 0.0, np.divide(diff, scale, out=np.full_like(diff, np.inf), where=scale > 0))
    within = diff <= tol.atol
    if tol.rtol is not None:
        within |= diff <= tol.rtol * np.where(bad_e, 0.0, scale)
    within &= ~odd
    stats.over_tolerance = int((~within).sum())
    stats.matched_nonfinite, stats.nonfinite_mismatch = int(same.sum()), int(odd.sum())
    compared = ~(bad_a | bad_e)
    stats.mean_abs = float(diff[compared].mean()) if compared.any() else 0.0
    stats.max_rel = float(rel[compared].max()) if compared.any() else 0.0
    ranking = np.where(odd, np.inf, diff)
    flat = int(np.argmax(ranking))
    stats.max_abs = float("nan") if stats.nonfinite_mismatch else float(diff.max())
    stats.worst_index = [int(i) for i in np.unravel_index(flat, expected.shape)]
    stats.worst_actual, stats.worst_expected = _scalar(actual.flat[flat]), _scalar(expected.flat[flat])
    if stats.nonfinite_mismatch:
        side = "the artifact" if (bad_a & odd).any() else "the reference"
        stats.error = f"{stats.nonfinite_mismatch} NaN/inf elements from {side} where the other side differs"
    return stats


def _scalar(value) -> float:
    value = complex(value) if np.iscomplexobj(value) else float(value)
    return abs(value) if isinstance(value, complex) else value


def _broken(reason: str) -> OutputStats:
    nan = float("nan")
    return OutputStats(max_abs=nan, max_rel=nan, mean_abs=nan, error=reason)


def compare_outputs(actual: dict, expected: dict, tol: Tolerance, names: Iterable[str] | None = None
                    ) -> dict[str, OutputStats]:
    """Per output name; an output that one side lacks is an error, never silently skipped."""
    names = list(names) if names is not None else list(dict.fromkeys([*expected, *actual]))
    result = {}
    for name in names:
        if name not in actual or name not in expected:
            side = "the artifact" if name not in actual else "the reference"
            result[name] = _broken(f"missing from {side}")
            continue
        result[name] = compare_arrays(actual[name], expected[name], tol)
    return result


@dataclass
class SampleResult:
    index: int
    sizes: dict
    shapes: dict  # input name -> shape
    outputs: dict  # output name -> OutputStats

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.outputs.values())


@dataclass
class ParityResult:
    tolerance: Tolerance
    samples: list = field(default_factory=list)  # SampleResult
    outputs: dict = field(default_factory=dict)  # output name -> merged stats dict (see merge)
    error: str | None = None  # the artifact failed to run, or an output could not be compared

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.samples) and all(s.passed for s in self.samples)

    @property
    def worst(self) -> tuple[str, dict] | None:
        if not self.outputs:
            return None
        return max(self.outputs.items(), key=lambda kv: _nan_high(kv[1]["max_abs"]))

    def add(self, sample: SampleResult) -> None:
        self.samples.append(sample)
        for name, stats in sample.outputs.items():
            _merge(self.outputs, name, stats, sample.index)
            if stats.error and self.error is None:
                where = f"at sizes {sample.sizes}" if sample.sizes else "at the example's sizes"
                self.error = f"output {name!r}: {stats.error} {where}"


def _nan_high(value) -> float:
    return float("inf") if value is None or value != value else value


def format_stat(value, digits: int = 3) -> str:
    """A statistic for a person: ``n/a`` where it could not be computed (None, NaN), else ``digits``
    significant digits."""
    return "n/a" if value is None or value != value else f"{value:.{digits}g}"


def rtol_hint(stats: dict, rtol: float | None) -> str:
    """Outputs in the hundreds fail a fixed atol on rounding alone: when a failure's relative error is
    small and no rtol was given, the line that reports it says that ``--rtol`` exists."""
    max_rel = stats.get("max_rel")
    if rtol is None and max_rel is not None and max_rel == max_rel and max_rel <= 1e-3:
        return f"; max rel {max_rel:.2g}: for large outputs, --rtol also passes elements within a relative error"
    return ""


def _merge(outputs: dict, name: str, stats: OutputStats, index: int) -> None:
    """Worst over samples: max abs (NaN wins) with its sample and element, max rel, element-weighted
    mean abs, and the counts summed."""
    entry = outputs.get(name)
    if entry is None:
        outputs[name] = {**stats.to_dict(), "worst_sample": index}
        return
    total = entry["elements"] + stats.elements
    if total:
        entry["mean_abs"] = (entry["mean_abs"] * entry["elements"] + stats.mean_abs * stats.elements) / total
    if not _nan_high(stats.max_abs) <= _nan_high(entry["max_abs"]):
        entry.update(max_abs=stats.max_abs, worst_index=stats.worst_index, worst_actual=stats.worst_actual,
                     worst_expected=stats.worst_expected, worst_sample=index)
    entry["max_rel"] = max(_nan_high(entry["max_rel"]), _nan_high(stats.max_rel))
    for key in ("over_tolerance", "elements", "matched_nonfinite", "nonfinite_mismatch"):
        entry[key] += getattr(stats, key)
    entry["over_fraction"] = entry["over_tolerance"] / entry["elements"] if entry["elements"] else 0.0
    entry["error"] = entry["error"] or stats.error


RunPair = Callable[[dict], "tuple[dict, dict]"]


def run_parity(samples: Iterable[tuple[dict, dict]], run: RunPair, tol: Tolerance,
               names: Iterable[str] | None = None, stop_on_failure: bool = False) -> ParityResult:
    """Compare over input sets drawn one at a time from ``samples`` (``(sizes, feed)`` pairs; a lazy
    generator stays lazy). ``run(feed) -> (actual, expected)``; a ``ParityError`` it raises (the artifact
    fails where the reference runs) ends the loop as a failed result, not an exception."""
    result = ParityResult(tolerance=tol)
    names = list(names) if names is not None else None
    for index, (sizes, feed) in enumerate(samples):
        try:
            actual, expected = run(feed)
        except ParityError as err:
            result.error = str(err)
            break
        shapes = {k: list(np.shape(v)) for k, v in feed.items()}
        result.add(SampleResult(index, sizes, shapes, compare_outputs(actual, expected, tol, names)))
        if stop_on_failure and not result.passed:
            break
    return result
