"""Loading and saving ONNX files with errors a person can act on."""

from __future__ import annotations

import os
from pathlib import Path

from lndeploy.errors import BadInputError
from lndeploy.fileio import atomic_path

_TWO_GIB = 2**31 - 1


def load_model(path: str | os.PathLike, load_external_data: bool = True):
    """Read an ONNX file; a missing, corrupt or truncated file raises ``BadInputError``."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except (DecodeError, RuntimeError, ValueError, OSError) as err:
        raise BadInputError(f"{path} is not a readable ONNX file ({type(err).__name__}: {err})") from err
    if not model.graph.node and not model.graph.output:
        raise BadInputError(f"{path} is not a readable ONNX file (empty or truncated graph)")
    try:
        onnx.checker.check_model(model, full_check=False)
    except Exception as err:  # onnx raises several unrelated types here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInputError(f"{path} is not a valid ONNX model: {first}") from err
    return model


def save_model(model, path: str | os.PathLike) -> None:
    """Write ``model`` as one self-contained file, atomically (models over 2 GiB get a .data file)."""
    import onnx

    path = Path(path)
    if model.ByteSize() > _TWO_GIB:
        data_name = path.name + ".data"
        with atomic_path(path) as tmp:
            onnx.save_model(model, str(tmp), save_as_external_data=True, location=data_name)
            # the data file was written under its final name beside tmp; tmp is renamed last
        return
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))


def opset_version(model, domain: str = "") -> int:
    for entry in model.opset_import:
        if entry.domain in (domain, "ai.onnx" if domain == "" else domain):
            return entry.version
    return 0
