"""No output of a command may be one of its inputs or another of its outputs (README "Exit codes").

Every path is compared resolved, symlinks followed, and by inode where both exist (a hard link is the
same file under another name). Called first thing by every entry point that writes files, so a clash
is exit 2 before any work and the input is left byte-identical.
"""

from __future__ import annotations

import os
from pathlib import Path

from lndeploy.errors import BadInputError


def prepare_outputs(outputs: dict, inputs: dict, in_place: tuple = ()) -> None:
    """``check_outputs``, then each output must be writable (``fileio.check_writable``): the one
    call an entry point makes before its work."""
    from lndeploy.fileio import check_writable

    check_outputs(outputs, inputs, in_place)
    for label, path in outputs.items():
        if _is_path(path):
            check_writable(path, label)


def check_outputs(outputs: dict, inputs: dict, in_place: tuple = ()) -> None:
    """``outputs`` and ``inputs``: {label (e.g. "--report"): path or None}. ``in_place``: (output
    label, input label) pairs allowed to be one file on purpose (``fuse x -o x``, written atomically)."""
    outs = [(label, path) for label, path in outputs.items() if _is_path(path)]
    ins = [(label, path) for label, path in inputs.items() if _is_path(path)]
    for i, (out_label, out) in enumerate(outs):
        for in_label, src in ins:
            if (out_label, in_label) not in in_place and same_file(out, src):
                raise BadInputError(f"{out_label} {out} is the same file as the input {in_label} {src}: "
                                    f"refusing to overwrite an input")
        for other_label, other in outs[i + 1:]:
            if same_file(out, other):
                raise BadInputError(f"{out_label} {out} and {other_label} {other} are the same file: "
                                    f"give each output its own path")


def same_file(a, b) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def model_file(ref) -> str | None:
    """The file a model reference (``file.py``, ``file.py:factory``) names, or None (a module name, an
    in-memory module)."""
    from lndeploy.modelfile import split_reference

    if not isinstance(ref, (str, os.PathLike)):
        return None
    path, _ = split_reference(os.fspath(ref))
    return path if Path(path).exists() or path.endswith(".py") else None


def _is_path(value) -> bool:
    return isinstance(value, (str, os.PathLike)) and os.fspath(value) not in ("", "-")
