"""Backends that run a deployed artifact: ONNX Runtime, ONNX's reference evaluator, TensorRT.

Each backend module is imported only when asked for, so ``import lndeploy`` needs none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lndeploy.errors import BadInputError

BACKENDS = ("onnxruntime", "onnx-reference", "tensorrt")


@dataclass(frozen=True)
class TensorMeta:
    """An input or output: ``shape`` holds ints for fixed dims and strings (or None) for dynamic ones."""

    name: str
    dtype: np.dtype
    shape: tuple


def normalize_feed(inputs, metas: list[TensorMeta]) -> dict[str, np.ndarray]:
    """Accept name -> array or a sequence in input order, numpy arrays or torch tensors."""
    names = [m.name for m in metas]
    if _is_array(inputs):
        inputs = [inputs]  # one array for a one-input model, not a sequence of its rows
    if isinstance(inputs, dict):
        unknown = [k for k in inputs if k not in names]
        if unknown:
            raise BadInputError(f"input {unknown[0]!r} is not in the model; its inputs are {names}")
        missing = [n for n in names if n not in inputs]
        if missing:
            raise BadInputError(f"input {missing[0]!r} is missing; the model's inputs are {names}")
        items = inputs.items()
    else:
        inputs = list(inputs)
        if len(inputs) != len(names):
            raise BadInputError(f"{len(inputs)} inputs given, the model takes {len(names)}: {names}")
        items = zip(names, inputs)
    by_name = {m.name: m for m in metas}
    feed = {}
    for name, value in items:
        array = _to_numpy(value)
        meta = by_name[name]
        if len(array.shape) != len(meta.shape):
            raise BadInputError(f"input {name!r} has rank {array.ndim}, the model expects shape {meta.shape}")
        for i, (got, want) in enumerate(zip(array.shape, meta.shape)):
            if isinstance(want, int) and got != want:
                raise BadInputError(f"input {name!r} dim {i} is {got}, the model expects {want}")
        feed[name] = _cast(array, meta, name)
    return feed


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or (hasattr(value, "detach") and hasattr(value, "dtype"))


def _cast(array: np.ndarray, meta: TensorMeta, name: str) -> np.ndarray:
    """Floats of another width are converted; a float array for an integer or bool input is refused
    (token ids would be truncated silently)."""
    if meta.dtype is None or array.dtype == meta.dtype:
        return array
    if array.dtype.kind == "f" and meta.dtype.kind in "iub":
        raise BadInputError(f"input {name!r} is {array.dtype}, the model expects {meta.dtype}")
    return array.astype(meta.dtype)


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return np.asarray(value)
