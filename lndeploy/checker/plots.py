"""``check --plots DIR``: pictures of how far the artifact is from PyTorch (README "How check decides").

* ``errors-OUTPUT.png``: the histogram of |artifact - PyTorch| over every element of every sample, log
  scale on both axes, the tolerance marked: a passing check shows its margin, a failing one how many
  elements are off and by how much.
* ``layers.png`` (when layers were compared): max abs error of each compared tensor along the model's
  depth (graph order), normalizations marked, the tolerance and the first divergence marked.

matplotlib is an optional extra (``pip install lndeploy[plots]``), imported only here, on the Agg
backend (no display needed). Counts are gathered in fixed log-spaced bins while the check runs, so
memory does not grow with ``--samples``.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from lndeploy.errors import UnavailableError
from lndeploy.parity import format_stat

EDGES = np.logspace(-12, 4, 97)  # 6 bins a decade; smaller errors count in the first, larger in the last


class ErrorHistograms:
    """Per-output counts of |actual - expected|; ``add`` is ``compare``'s ``on_sample``."""

    def __init__(self):
        self.counts: dict[str, np.ndarray] = {}
        self.exact: dict[str, int] = {}  # elements equal on both sides (no place on a log axis)
        self.nonfinite: dict[str, int] = {}  # NaN/inf on one side only

    def add(self, actual: dict, expected: dict) -> None:
        for name, value in actual.items():
            if name not in expected or np.shape(value) != np.shape(expected[name]):
                continue
            a, e = (np.asarray(x, dtype=np.float64).ravel() for x in (value, expected[name]))
            same = (a == e) | (np.isnan(a) & np.isnan(e))  # lndeploy.parity's rule: NaN/inf alike is equal
            with np.errstate(invalid="ignore", over="ignore"):
                diff = np.abs(a - e)[~same]
            finite = diff[np.isfinite(diff)]
            self.nonfinite[name] = self.nonfinite.get(name, 0) + int(diff.size - finite.size)
            self.exact[name] = self.exact.get(name, 0) + int(same.sum())
            clipped = np.clip(finite, EDGES[0], EDGES[-1])
            counts = np.histogram(clipped, bins=EDGES)[0]
            self.counts[name] = self.counts.get(name, 0) + counts


def check_folder(folder) -> Path:
    """The folder must be a folder (made when missing, with its parent already there): said before work."""
    from lndeploy.errors import BadInputError

    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise BadInputError(f"--plots: {folder} exists and is not a folder")
    if not path.exists() and not path.resolve().parent.is_dir():
        raise BadInputError(f"--plots: its parent folder does not exist: {path.parent}")
    return path


def write(folder, result, histograms: ErrorHistograms) -> list[str]:
    """Write the PNGs for ``result`` (a ``CheckResult``) into ``folder``; return their paths."""
    plt = _pyplot()
    folder = Path(folder)
    folder.mkdir(exist_ok=True)
    written = []
    for name, counts in histograms.counts.items():
        figure = _histogram(plt, name, counts, histograms, result)
        written.append(_save(plt, figure, folder / f"errors-{_file_name(name)}.png"))
    if result.layers:
        written.append(_save(plt, _depth(plt, result), folder / "layers.png"))
    return written


def _pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise UnavailableError("--plots needs matplotlib: pip install 'lndeploy[plots]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _histogram(plt, name: str, counts: np.ndarray, histograms: ErrorHistograms, result):
    stats = result.outputs.get(name, {})
    figure, axes = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    shown = np.nonzero(counts)[0]
    lo, hi = (shown[0], shown[-1] + 1) if shown.size else (0, len(counts))
    lo, hi = max(lo - 6, 0), min(hi + 6, len(counts))
    axes.stairs(counts[lo:hi], EDGES[lo:hi + 1], fill=True, color="tab:blue", alpha=0.7)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.axvline(result.atol, color="tab:red", linestyle="--", label=f"atol {result.atol:g}")
    if result.budget.get("limit") not in (None, result.atol):
        limit = result.budget["limit"]
        axes.axvline(limit, color="tab:orange", linestyle=":", label=f"budget {limit:g}")
    axes.set_xlabel("|artifact - PyTorch| per element")
    axes.set_ylabel("elements")
    extra = [f"{histograms.exact.get(name, 0)} exactly equal"]
    if histograms.nonfinite.get(name):
        extra.append(f"{histograms.nonfinite[name]} NaN/inf on one side")
    over = stats.get("over_tolerance", 0)
    axes.set_title(f"{name}: max abs {format_stat(stats.get('max_abs'))}, {over} of {stats.get('elements', 0)} over "
                   f"tolerance\n({', '.join(extra)}; {len(result.samples)} samples on {result.backend})", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _depth(plt, result):
    rows = result.layers
    figure, axes = plt.subplots(figsize=(max(6.4, 0.32 * len(rows)), 4.0), dpi=100)
    x = np.arange(len(rows))
    errors = np.array([_positive(r["max_abs"]) for r in rows])
    inputs = np.array([_positive(r.get("input_max_abs")) for r in rows])
    norm = np.array([r.get("kind", "norm") == "norm" for r in rows])
    axes.plot(x, errors, color="tab:gray", linewidth=0.8)
    axes.scatter(x[norm], errors[norm], color="tab:blue", label="normalization output", zorder=3)
    if (~norm).any():
        axes.scatter(x[~norm], errors[~norm], color="tab:green", marker="s", s=14, label="module output", zorder=3)
    if np.isfinite(inputs).any():
        axes.scatter(x, inputs, color="tab:purple", marker="x", s=18, label="its input", zorder=2)
    axes.axhline(result.atol, color="tab:red", linestyle="--", label=f"atol {result.atol:g}")
    first = result.first_divergence
    if first:
        at = next(i for i, r in enumerate(rows) if r["node"] == first["node"])
        axes.annotate("first divergence", (at, errors[at]), textcoords="offset points", xytext=(14, -28), fontsize=8,
                      arrowprops={"arrowstyle": "->"})
    axes.set_yscale("log")
    axes.set_xticks(x, [str(r["module"] or r["node"]) for r in rows], rotation=60, ha="right", fontsize=7)
    axes.set_ylabel("max abs error vs PyTorch")
    axes.set_title("error of each compared tensor along the model (graph order)", fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def _positive(value) -> float:
    """Zero and missing have no place on a log axis: NaN leaves the point out."""
    return float(value) if value is not None and value == value and value > 0 else float("nan")


def _save(plt, figure, path: Path) -> str:
    from lndeploy.fileio import write_bytes_atomic

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())
    return str(path)


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80] or "output"

