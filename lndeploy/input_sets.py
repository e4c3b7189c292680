"""Input sets a user gives instead of generated ones: ``check --inputs FILE`` and ``sample_inputs()``.

The generated sets of ``lndeploy.inputs`` stay the default (README "How check decides"); real inputs
matter where random ones miss the model's behaviour (a DistilBERT's attention mask with padded rows,
token ids from a real vocabulary). Given sets go through the same lazy ``(sizes, feed)`` schedule the
checker consumes, after the same signature check: every input named, same dtype, same rank, fixed dims
equal, and dims that share a dynamic label equal within one set.

Files (numpy only, ``allow_pickle=False``: an input file is data, not code):
- ``FILE.npz``: one input set, one array per input name;
- ``FILE.npy``: one input set of a one-input model;
- a folder: every ``*.npz`` in it, one set each in name order, or else its ``NAME.npy`` files as one set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from lndeploy.errors import BadInputError, first_line
from lndeploy.inputs import InputSpec

ONLY_INPUT = ""  # the key of a bare .npy: the one input of a one-input model


def load(path) -> list[dict]:
    """The input sets in ``path`` (see the module docstring), as name -> array."""
    path = Path(path)
    if path.is_dir():
        sets = sorted(path.glob("*.npz"))
        if sets:
            return [_read_npz(f) for f in sets]
        arrays = sorted(path.glob("*.npy"))
        if not arrays:
            raise BadInputError(f"--inputs {path}: the folder holds no .npz or .npy file")
        return [{f.stem: _read_npy(f) for f in arrays}]
    if not path.is_file():
        raise BadInputError(f"--inputs: no such file or folder: {path}")
    if path.suffix == ".npz":
        return [_read_npz(path)]
    if path.suffix == ".npy":
        return [{ONLY_INPUT: _read_npy(path)}]
    raise BadInputError(f"--inputs {path}: expected a .npz file, a .npy file or a folder of them")


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as err:
        raise BadInputError(f"--inputs {path}: not a readable .npz of numeric arrays ({first_line(err)})") from err


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise BadInputError(f"--inputs {path}: not a readable .npy numeric array ({first_line(err)})") from err


def schedule(sets: Iterable[dict], specs: list[InputSpec], where: str) -> Iterator[tuple[dict, dict]]:
    """``(sizes, feed)`` for each given set, checked against the signature ``specs`` as it is drawn
    (a ``sample_inputs()`` generator stays lazy). ``where`` names the source in error messages."""
    for index, given in enumerate(sets):
        yield validate(given, specs, f"{where}, input set {index}")


def validate(given, specs: list[InputSpec], where: str) -> tuple[dict, dict]:
    """One given set -> ``(sizes, feed)``; anything that does not fit the signature is one line, exit 2."""
    if not isinstance(given, dict):
        raise BadInputError(f"{where}: an input set must be a dict of input name -> array, "
                            f"got {type(given).__name__}")
    if set(given) == {ONLY_INPUT}:
        if len(specs) != 1:
            raise BadInputError(f"{where}: a bare .npy gives one input, the model takes {[s.name for s in specs]}; "
                                f"use a .npz or a folder of NAME.npy")
        given = {specs[0].name: given[ONLY_INPUT]}
    wanted = [s.name for s in specs]
    missing = [n for n in wanted if n not in given]
    extra = [n for n in given if n not in wanted]
    if missing or extra:
        raise BadInputError(f"{where}: inputs {sorted(given)} do not match the model's {wanted}"
                            + (f" (missing {missing})" if missing else "") + (f" (unknown {extra})" if extra else ""))
    sizes, feed = {}, {}
    for spec in specs:
        array = as_array(given[spec.name])
        _check_array(array, spec, sizes, where)
        feed[spec.name] = array
    return sizes, feed


def as_array(value) -> np.ndarray:
    """numpy arrays as they are; tensors (anything with ``detach``) through ``.detach().cpu().numpy()``,
    so this module never imports torch."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _check_array(array: np.ndarray, spec: InputSpec, sizes: dict, where: str) -> None:
    label = f"{where}: input {spec.name!r}"
    if array.dtype != spec.dtype:
        raise BadInputError(f"{label} is {array.dtype}, the model takes {spec.dtype} (convert it with "
                            f".astype(np.{spec.dtype.name}))")
    if array.ndim != len(spec.shape):
        raise BadInputError(f"{label} has rank {array.ndim} {list(array.shape)}, the model takes rank "
                            f"{len(spec.shape)} {list(spec.shape)}")
    for index, (size, dim) in enumerate(zip(array.shape, spec.shape)):
        if isinstance(dim, int):
            if size != dim:
                raise BadInputError(f"{label} has dim {index} = {size}, the model fixes it to {dim}")
        elif sizes.setdefault(dim, int(size)) != size:
            raise BadInputError(f"{label} has dim {index} ({dim!r}) = {size}, another input of the set has "
                                f"{sizes[dim]}")
