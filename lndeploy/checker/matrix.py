"""``lndeploy check --config FILE.toml``: a whole matrix of checks in one process (docs/ci.md).

Six models in two precisions and two LN forms, run as separate commands, import torch and export the
same model again in every step. Here torch is imported once, each model file loaded once and traced
by torch's exporter once (LN form and precision are graph passes over that trace), and each (model,
precision, LN form) exported (passes + verification) once into a temporary folder and reused by every
backend of it (an engine built from it once per group). Every cell goes through ``lndeploy.check``, the one check
core, with the exported file as its artifact.

Exit code: the worst of the cells by their README meaning: 4 (an internal error) over 2 (a model
or input fault) over 1 (a parity failure) over 0. A cell that cannot run here (``UnavailableError``,
exit 3) is reported as skipped with its reason, never as passed; 3 is the exit code only when no cell
could run at all.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field

from lndeploy.checker import matrix_config
from lndeploy.errors import LndeployError, UnavailableError

SCHEMA = "lndeploy.matrix/1"
STATUS_BY_EXIT = {0: "passed", 1: "failed", 2: "error", 3: "skipped", 4: "error"}
SEVERITY = (4, 2, 1, 0)  # worst first; 3 counts only when nothing else ran


@dataclass
class Cell:
    """One (model, precision, LN form, backend) check and what came of it."""

    model: str  # the [[model]] name
    path: str  # the model file (annotations point at it)
    precision: str | None  # None: a given artifact's own, filled in once it is read
    ln: str | None
    backend: str
    status: str = "pending"  # passed | failed | error | skipped
    exit_code: int | None = None
    message: str = ""
    seconds: float = 0.0  # the check; the export it shares with its group is export_seconds
    export_seconds: float = 0.0
    result: object = None  # the CheckResult, when the comparison ran
    report: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return ".".join([self.model, self.precision or "artifact", self.ln or "artifact", self.backend])

    @property
    def worst(self) -> tuple[str, dict] | None:
        return self.result.worst if self.result is not None else None

    @property
    def limit(self) -> float | None:
        if self.result is None:
            return None
        return (self.result.budget or {}).get("limit") or self.result.atol

    def finish(self, exit_code: int, message: str, result=None, report: dict | None = None) -> None:
        self.exit_code, self.status, self.message = exit_code, STATUS_BY_EXIT[exit_code], message
        self.result, self.report = result, report or {}

    def to_dict(self) -> dict:
        return {"id": self.id, "model": self.model, "path": self.path, "precision": self.precision, "ln": self.ln,
                "backend": self.backend, "status": self.status, "exit_code": self.exit_code,
                "message": self.message, "seconds": round(self.seconds, 3),
                "export_seconds": round(self.export_seconds, 3), "report": self.report}


@dataclass
class MatrixRun:
    config: str
    cells: list = field(default_factory=list)
    exports: list = field(default_factory=list)  # one entry per export made, with its time
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        codes = {c.exit_code for c in self.cells}
        return next((code for code in SEVERITY if code in codes), 3)

    def counts(self) -> dict:
        return {status: sum(c.status == status for c in self.cells)
                for status in ("passed", "failed", "error", "skipped")}

    def summary(self) -> str:
        counts = ", ".join(f"{n} {status}" for status, n in self.counts().items() if n)
        return (f"matrix {self.config}: {len(self.cells)} cells: {counts} in {self.seconds:.1f} s "
                f"(exit {self.exit_code})")

    def to_report(self) -> dict:
        from lndeploy.checker import report as reports

        return {"schema": SCHEMA, **{k: v for k, v in reports.header(model=self.config, seed=None).items()
                                     if k in ("created", "versions")},
                "config": self.config, "passed": self.exit_code == 0, "exit_code": self.exit_code,
                "counts": self.counts(), "seconds": round(self.seconds, 3), "exports": self.exports,
                "cells": [c.to_dict() for c in self.cells]}


def plan(entries) -> list[Cell]:
    cells = []
    for entry in entries:
        for precision, ln in _groups(entry):
            cells += [Cell(entry.name, entry.path, precision, ln, backend) for backend in entry.backends]
    return cells


def _groups(entry) -> list[tuple[str | None, str | None]]:
    if entry.onnx or entry.engine:
        return [(None, None)]
    return [(p, ln) for p in entry.precisions for ln in entry.ln]


def run(config, *, samples: int | None = None, seed: int | None = None, debug: bool = False,
        progress=None, plots=None) -> MatrixRun:
    """Run every cell of ``config``; ``progress(cell)`` is called as each finishes. ``samples``/``seed``:
    defaults for models whose entry does not set them. ``plots``: a folder with one subfolder of error
    plots per cell (``check --plots``)."""
    entries = matrix_config.load(config)
    if plots is not None:
        from lndeploy.checker.plots import check_folder

        check_folder(plots).mkdir(exist_ok=True)
    outcome = MatrixRun(str(config), plan(entries))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lndeploy-matrix-") as tmp:
        for entry in entries:
            entry.samples = entry.samples if entry.samples is not None else samples
            entry.seed = entry.seed if entry.seed is not None else (seed or 0)
            cells = [c for c in outcome.cells if c.model == entry.name]
            _run_model(entry, cells, tmp, outcome.exports, debug, progress, plots)
    outcome.seconds = time.perf_counter() - start
    return outcome


def _run_model(entry, cells: list, tmp: str, exports: list, debug: bool, progress, plots=None) -> None:
    from lndeploy import modelfile

    try:
        spec = modelfile.load(entry.path)
    except Exception as err:
        for cell in cells:
            _fail(cell, err, debug, entry, progress)
        return
    traced = {}  # torch's exporter runs once per model: LN form and precision are passes over its graph
    for precision, ln in _groups(entry):
        group = [c for c in cells if (c.precision, c.ln) == (precision, ln)]
        start = time.perf_counter()
        try:
            artifacts = _artifacts(entry, spec, precision, ln, tmp, exports, {c.backend for c in group}, traced)
        except Exception as err:
            artifacts = err
        for cell in group:
            cell.export_seconds = time.perf_counter() - start if cell is group[0] else group[0].export_seconds
            if isinstance(artifacts, Exception):
                _fail(cell, artifacts, debug, entry, progress)
            else:
                _run_cell(cell, entry, spec, artifacts, debug, progress, plots)


def _artifacts(entry, spec, precision, ln, tmp: str, exports: list, backends: set, traced: dict) -> dict:
    """{"onnx": path, "engine": path or an error}: the given artifact, or the group's one export (and,
    for a tensorrt backend, its one engine). ``traced``: the model's one torch trace, made on first use."""
    if entry.engine:
        return {"engine": entry.engine}
    onnx = entry.onnx
    if onnx is None:
        from lndeploy.exporter import trace
        from lndeploy.pipeline import export

        atol, rtol = entry.tolerance(precision)
        onnx = os.path.join(tmp, f"{entry.name}.{precision}.{ln}.onnx")
        start = time.perf_counter()
        if "graph" not in traced:
            traced["graph"] = trace(spec, entry.opset or 18)
        export(spec, onnx, ln=ln, precision=precision, opset=entry.opset or 18, atol=atol, rtol=rtol,
               traced=traced["graph"])
        exports.append({"model": entry.name, "precision": precision, "ln": ln,
                        "seconds": round(time.perf_counter() - start, 3)})
    found = {"onnx": onnx}
    if "tensorrt" in backends:
        try:
            from lndeploy.backends.tensorrt import build_engine

            engine = os.path.splitext(onnx)[0] + ".engine" if entry.onnx is None else \
                os.path.join(tmp, f"{entry.name}.engine")
            build_engine(onnx, engine, progress=False, model=entry.path)
            found["engine"] = engine
        except LndeployError as err:  # this group's tensorrt cells report it; the others still run
            found["engine"] = err
    return found


def _run_cell(cell: Cell, entry, spec, artifacts: dict, debug: bool, progress, plots=None) -> None:
    from lndeploy.checker import check
    from lndeploy.checker import report as reports

    start = time.perf_counter()
    atol, rtol = entry.tolerance(cell.precision)
    target = {"engine": artifacts["engine"]} if cell.backend == "tensorrt" else {"onnx": artifacts["onnx"]}
    options = {key: getattr(entry, key) for key in ("budget", "plugin_impl") if getattr(entry, key)}
    try:
        if isinstance(target.get("engine"), Exception):
            raise target["engine"]
        if cell.precision is None:  # a given artifact: its own precision and LN form name the cell
            from lndeploy.inspection import artifact_form

            form = artifact_form(next(iter(target.values())))
            cell.precision, cell.ln = form.get("precision"), form.get("ln")
        if plots is not None:
            options["plots"] = os.path.join(plots, cell.id)
        result = check(spec, **target, backend=cell.backend, atol=atol, rtol=rtol, samples=entry.samples,
                       seed=entry.seed, debug=debug, inputs=entry.inputs, **options)
    except Exception as err:
        cell.seconds = time.perf_counter() - start
        _fail(cell, err, debug, entry, progress)
        return
    cell.seconds = time.perf_counter() - start
    cell.precision, cell.ln = cell.precision or result.precision, cell.ln or result.ln  # an engine without sidecar
    report = {**reports.header(model=entry.path, seed=entry.seed), **result.to_report()}
    if not (entry.onnx or entry.engine):
        label = f"(exported in this run: ln={cell.ln}, {cell.precision}, opset {entry.opset or 18})"
        result.artifact = report["artifact"]["path"] = label
    cell.finish(0 if result.passed else 1, result.summary(), result, report)
    if progress:
        progress(cell)


def _fail(cell: Cell, err: Exception, debug: bool, entry, progress) -> None:
    """A cell that ended in an exception: its exit code and one line; internal errors only with --debug
    raise (the CLI then shows the traceback)."""
    from lndeploy.checker import report as reports

    if isinstance(err, LndeployError):
        code, message = err.exit_code, str(err)
    elif debug:
        raise err
    else:
        code, message = 4, f"internal error: {type(err).__name__}: {str(err).strip()[:300]}"
    if isinstance(err, UnavailableError):
        message = f"cannot run here: {message}"
    cell.finish(code, message, report={**reports.header(model=entry.path, seed=entry.seed), "passed": False,
                                       "exit_code": code, "error": message, "backend": cell.backend,
                                       "precision": cell.precision, "ln": cell.ln})
    if progress:
        progress(cell)


def single(model: str, backend: str, result=None, error: Exception | None = None, seconds: float = 0.0) -> MatrixRun:
    """A one-cell run for a plain ``check`` (or ``check --golden``) that writes --junit/--summary."""
    from lndeploy.checker import report as reports
    from lndeploy.modelfile import split_reference

    name = os.path.splitext(os.path.basename(split_reference(str(model))[0]))[0] or str(model)
    precision, ln = (result.precision, result.ln) if result is not None else (None, None)
    cell = Cell(name, str(model), precision, ln, backend, seconds=seconds)
    if result is not None:
        cell.finish(0 if result.passed else 1, result.summary(), result,
                    {**reports.header(model=model, seed=None), **result.to_report()})
    else:
        cell.finish(error.exit_code if isinstance(error, LndeployError) else 4, str(error))
    return MatrixRun(str(model), [cell], seconds=seconds)
