"""Golden outputs: ``check --save-outputs DIR`` keeps PyTorch's outputs, ``check --golden DIR`` uses them.

A deploy machine often has no PyTorch (an inference image with ONNX Runtime or TensorRT only). There
the saved outputs are the reference: ``check --golden DIR --onnx A.onnx`` runs the artifact on the
saved inputs and compares through ``lndeploy.parity``, the same statistics and tolerance rule as a
check against PyTorch. This module, and everything the golden path imports, must not import torch
(tests/check/test_golden.py runs it in a process that asserts so).

Layout of DIR (docs/ci.md "Golden outputs"):
    manifest.json        what produced the files (model, precision, LN form, seed, versions, sizes)
    inputs/NNN.npz       input set NNN, one array per model input (``--inputs DIR/inputs`` reads it back)
    outputs/NNN.npz      PyTorch's outputs for it, one array per artifact output name
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lndeploy.errors import BadInputError, LndeployError, ParityError

SCHEMA = "lndeploy.golden/1"
MANIFEST = "manifest.json"


class Recorder:
    """Collects ``(feed, pytorch_outputs)`` as the check runs (``compare``'s ``record``)."""

    def __init__(self):
        self.sets: list[tuple[dict, dict]] = []

    def __call__(self, feed: dict, outputs: dict) -> None:
        self.sets.append((dict(feed), dict(outputs)))


def check_target(folder, inputs=None) -> None:
    """Before any work: the folder's parent exists; an existing folder is empty or an earlier golden
    set (never some other folder's files); it is not where the inputs come from."""
    folder = Path(folder)
    if not folder.resolve().parent.is_dir():
        raise BadInputError(f"--save-outputs: parent folder does not exist: {folder.parent}")
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / MANIFEST).is_file())):
        raise BadInputError(f"--save-outputs {folder}: exists and is not an earlier golden folder; "
                            f"give a new or empty folder")
    if inputs is not None:
        source, target = Path(inputs).resolve(), folder.resolve()
        if source == target or target in source.parents:
            raise BadInputError(f"--save-outputs {folder} would overwrite the --inputs it reads ({inputs})")


def save(folder, recorder: Recorder, result, *, model: str, seed: int, input_source: str) -> None:
    """Write the golden folder: built beside it, then renamed into place (an earlier one replaced)."""
    import numpy as np

    from lndeploy.checker.report import versions
    from lndeploy.fileio import write_json_atomic

    folder = Path(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.resolve().parent))
    try:
        (staging / "inputs").mkdir()
        (staging / "outputs").mkdir()
        entries = []
        for index, ((feed, outputs), sample) in enumerate(zip(recorder.sets, result.samples)):
            name = f"{index:03d}.npz"
            np.savez(staging / "inputs" / name, **feed)
            np.savez(staging / "outputs" / name, **outputs)
            entries.append({"sizes": sample["sizes"], "inputs": f"inputs/{name}", "outputs": f"outputs/{name}"})
        first = recorder.sets[0] if recorder.sets else ({}, {})
        write_json_atomic(staging / MANIFEST, {
            "schema": SCHEMA, "model": model, "seed": seed, "inputs_from": input_source,
            "precision": result.precision, "ln": result.ln, "reference": "pytorch (eager, fp32, CPU)",
            "budget": result.budget or None,
            "versions": versions(), "input_names": list(first[0]), "output_names": list(first[1]),
            "samples": entries})
        _replace_folder(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _replace_folder(staging: Path, folder: Path) -> None:
    old = None
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.resolve().parent))
        os.replace(folder, old / "previous")
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old)


def read_manifest(folder) -> dict:
    import json

    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInputError(f"--golden {folder}: no {MANIFEST} (write one with check MODEL --save-outputs DIR)") \
            from None
    except (OSError, ValueError) as err:
        raise BadInputError(f"--golden {folder}: {MANIFEST} is not readable JSON ({err})") from err
    if manifest.get("schema") != SCHEMA or not isinstance(manifest.get("samples"), list):
        raise BadInputError(f"--golden {folder}: {MANIFEST} is not a {SCHEMA} manifest")
    return manifest


def check(folder, *, onnx=None, engine=None, backend: str | None = None, atol: float | None = None,
          rtol: float | None = None, samples: int | None = None, report=None):
    """The artifact against the golden outputs in ``folder``, without PyTorch. Returns a ``CheckResult``;
    ``report`` (a JSON file, ``-`` for stdout) is written on every exit path, as ``lndeploy.check`` does."""
    from lndeploy.checker import report as reports

    artifact = onnx or engine
    if onnx is not None and engine is not None or artifact is None:
        raise BadInputError("--golden compares an artifact: give exactly one of --onnx or --engine")
    backend = backend or ("tensorrt" if engine is not None else "onnxruntime")
    model = f"golden outputs {folder}"
    context = {"backend": backend, "artifact": {"path": str(artifact), "sha256": reports.sha256(artifact)}}
    try:
        result = _compare(Path(folder), str(artifact), backend, atol, rtol, samples)
    except LndeployError as err:
        if report is not None:
            reports.write(report, reports.failure(err, model=model, seed=None, **context))
        raise
    if report is not None:
        reports.write(report, {**reports.header(model=model, seed=None), **result.to_report(),
                               "reference": f"golden outputs in {folder} (PyTorch, saved by check --save-outputs)"})
    return result


def _compare(folder: Path, artifact: str, backend: str, atol, rtol, samples):
    import itertools

    from lndeploy import parity
    from lndeploy.checker.result import CheckResult
    from lndeploy.checker.report import sha256
    from lndeploy.inspection import artifact_form
    from lndeploy.session import Session

    manifest = read_manifest(folder)
    if not Path(artifact).is_file():
        raise BadInputError(f"artifact not found: {artifact}")
    form = artifact_form(artifact)
    precision = form.get("precision") or manifest.get("precision") or "fp32"
    asked = parity.tolerance(precision, atol=atol, rtol=rtol)
    budget = manifest.get("budget") or {}
    saved_budget = atol is None and budget.get("mode") == "auto" and manifest.get("precision") == precision
    # the auto limit needs PyTorch's own reduced-precision error: the saving check measured it
    tol = parity.Tolerance(budget["limit"], asked.rtol) if saved_budget else asked
    expected_now = {}

    def sets():
        for entry in itertools.islice(manifest["samples"], samples):
            feed, expected_now["outputs"] = _load(folder, entry["inputs"]), _load(folder, entry["outputs"])
            yield entry.get("sizes", {}), feed

    with Session(artifact, backend=backend) as session:
        _check_names(session, manifest, folder)

        def run(feed):
            try:
                used = {k: v for k, v in feed.items() if k in session.input_names}
                return session.run(used), expected_now["outputs"]
            except LndeployError as err:
                shapes = ", ".join(f"{k}:{tuple(v.shape)}" for k, v in feed.items())
                raise ParityError(f"{backend} failed on the golden inputs {shapes}: {err}") from err

        outcome = parity.run_parity(sets(), run, tol, names=manifest["output_names"])
        provider = session.provider
    result = CheckResult(passed=outcome.passed, backend=backend, provider=provider, atol=asked.atol, rtol=tol.rtol,
                         budget=budget if saved_budget else {},
                         artifact=artifact, error=outcome.error, precision=precision, ln=form.get("ln") or "native",
                         sha256=sha256(artifact),
                         notes=[f"reference: golden outputs in {folder} saved from {manifest.get('model')}"])
    result.samples = [{"sizes": s.sizes, "shapes": s.shapes, "passed": s.passed} for s in outcome.samples]
    result.outputs = outcome.outputs
    return result


def _check_names(session, manifest: dict, folder: Path) -> None:
    """Outputs must be the golden ones; inputs the golden ones or fewer (an exporter drops inputs the
    graph does not read)."""
    if sorted(session.output_names) != sorted(manifest["output_names"]):
        raise BadInputError(f"--golden {folder}: the artifact's outputs {session.output_names} are not the "
                            f"golden outputs {manifest['output_names']}")
    unknown = [n for n in session.input_names if n not in manifest["input_names"]]
    if unknown:
        raise BadInputError(f"--golden {folder}: the artifact's inputs {unknown} are not among the golden inputs "
                            f"{manifest['input_names']}")


def _load(folder: Path, relative: str) -> dict:
    import numpy as np

    path = folder / relative
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as err:
        raise BadInputError(f"--golden {folder}: cannot read {relative} ({err})") from err
