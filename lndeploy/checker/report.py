"""The ``--report`` JSON of ``lndeploy check``: what ran, on what, and how it compared (README 'How check decides').

Written on every exit path once the command has started work: 0 and 1 with the comparison, 2 (a model
fault) and 3 (cannot run here) with ``error`` and ``exit_code`` saying why, so a CI gate that reads the
report never finds a stale or missing file. ``-`` prints it to stdout instead of a file.
"""

from __future__ import annotations

import datetime
import platform
import sys
from importlib import metadata
from pathlib import Path

SCHEMA = "lndeploy.check/2"
# distributions a report names the versions of, where installed (importlib.metadata: nothing is imported)
VERSIONED = ("lndeploy", "torch", "onnx", "onnxruntime-gpu", "onnxruntime", "onnxscript", "polygraphy", "numpy",
             "tensorrt", "tensorrt-rtx", "triton")


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def sha256(path) -> str | None:
    """The artifact's digest (an engine or ONNX file; not its external-data side file), None if unreadable."""
    from lndeploy.fileio import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return None


def model_reference(model) -> str:
    """How the report names the model: the model-file reference as given, or the in-memory module's class."""
    if isinstance(model, (str, Path)):
        return str(model)
    source = getattr(model, "source", None)  # a loaded ModelSpec
    if isinstance(source, str):
        return source
    return f"in-memory {type(model).__module__}.{type(model).__qualname__}"


def header(*, model, seed: int) -> dict:
    """The fields every report starts with, whatever happened next."""
    return {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(), "model": model_reference(model), "seed": seed}


def failure(err, *, model, seed: int, **context) -> dict:
    """The report of a check that could not compare: why (one line), and its exit code."""
    return {**header(model=model, seed=seed), "passed": False, "exit_code": err.exit_code, "error": str(err),
            "outputs": {}, "samples": [], **context}


def write(target, report: dict) -> None:
    if str(target) == "-":
        from lndeploy.fileio import strict_json

        sys.stdout.write(strict_json(report) + "\n")
        sys.stdout.flush()
        return
    from lndeploy.fileio import write_json_atomic

    write_json_atomic(target, report)
