"""Atomic file output: write beside the target, then rename, so no half-written file is ever left.

A write that cannot happen (read-only folder, full disk, a name too long, a folder where the file
should go) is the user's to fix: ``BadInputError`` naming the path (exit 2), never an internal error.
The temporary file is named ``.NAME.lndeploy-PID-XXXX.tmp`` so a user who finds one knows what it is;
one left by a process that was killed (kill -9) is removed by the next write to the same path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import signal
import tempfile
from pathlib import Path
from typing import Iterator

from lndeploy.errors import BadInputError

_TEMP_TAG = ".lndeploy-"
_TEMP_EXTRA = len(f".{_TEMP_TAG}{2**22}-xxxxxxxx.tmp") + 8  # what the temp name adds to the target's
_NAME_MAX = 255  # bytes, on every common Linux/macOS file system


def check_writable(target: str | os.PathLike, what: str | None = None) -> Path:
    """Refuse, before any work, an output that cannot be written: missing or read-only folder, a
    folder in its place, a name over the file system's limit. ``what`` (an option name) prefixes the
    message. Returns the target as a Path."""
    target = Path(target)
    folder = _folder(target)
    said = f"{what}: " if what else ""
    if not folder.is_dir():
        raise BadInputError(f"{said}output folder does not exist: {folder}")
    size = len(os.fsencode(target.name))
    if size > _NAME_MAX:  # before any call that stats it: those raise ENAMETOOLONG
        raise BadInputError(f"{said}output file name is {size} bytes, over the file system's limit of "
                            f"{_NAME_MAX}: {target.name[:40]}...")
    if target.is_dir():
        raise BadInputError(f"{said}output {target} is a folder, not a file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInputError(f"{said}cannot write {target}: folder {folder} is not writable")
    return target


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` only on success."""
    target = check_writable(target)
    folder = _folder(target)
    _sweep_dead_temps(folder, target.name)
    tmp_path = None
    try:
        # a signal between creating the file and knowing its name would leave it behind: defer them
        with _signals_deferred():
            fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target.name), suffix=".tmp", dir=folder)
            tmp_path = Path(tmp)
        os.close(fd)
        # mkstemp makes the file 0600; a finished output gets the mode any new file gets here
        os.chmod(tmp_path, 0o666 & ~current_umask())
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as err:
        raise _write_error(err, target) from err
    finally:
        if tmp_path is not None and tmp_path.exists():
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


def _folder(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


def _temp_prefix(name: str) -> str:
    """``.NAME.lndeploy-PID-``, NAME cut so the whole temp name stays within 255 bytes (a legal
    245-byte output name must not fail on its temp file's name)."""
    room = _NAME_MAX - _TEMP_EXTRA
    short = os.fsencode(name)[:room].decode("utf-8", "ignore") if len(os.fsencode(name)) > room else name
    return f".{short}{_TEMP_TAG}{os.getpid()}-"


def _sweep_dead_temps(folder: Path, name: str) -> None:
    """Remove temp files for this target whose writing process no longer exists (killed with -9)."""
    prefix = re.escape(_temp_prefix(name).rsplit(_TEMP_TAG, 1)[0] + _TEMP_TAG)
    pattern = re.compile(prefix + r"(\d+)-\w+\.tmp$")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        found = pattern.match(entry.name)
        if found and not _alive(int(found.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


@contextlib.contextmanager
def _signals_deferred():
    mask = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, mask)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


_WHY = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
        errno.EPERM: "permission denied", errno.EISDIR: "a folder is in the way",
        errno.ENAMETOOLONG: "the file name is too long",
        errno.ENOTDIR: "a file is in the path where a folder should be"}


def _write_error(err: OSError, target: Path) -> BadInputError:
    why = _WHY.get(err.errno) or err.strerror or type(err).__name__
    return BadInputError(f"cannot write {target}: {why}")


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back): the mode a new file would get."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_sha256(path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks (engines and ONNX files can be large)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
