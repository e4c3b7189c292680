"""Atomic file output: write beside the target, then rename, so no half-written file is ever left."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` only on success."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        from lndeploy.errors import BadInputError

        raise BadInputError(f"output folder does not exist: {folder}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file 0600; a finished output gets the mode any new file gets here
    os.chmod(tmp_path, 0o666 & ~_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(target: str | os.PathLike, obj) -> None:
    """Strict JSON: a NaN or infinite float (an error statistic that could not be computed) is
    written as null, since Python's bare NaN/Infinity tokens are rejected by standard parsers (jq,
    JSON.parse, Go's encoding/json) that a CI gate reads reports with."""
    write_bytes_atomic(target, (strict_json(obj) + "\n").encode())


def strict_json(obj) -> str:
    """``obj`` as strict JSON text, NaN and infinities as null (see ``write_json_atomic``)."""
    return json.dumps(_finite_or_null(obj), indent=2, sort_keys=False, allow_nan=False)


def _finite_or_null(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    return obj


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
