"""Backends that run a deployed artifact: ONNX Runtime, ONNX's reference evaluator, TensorRT.

Each backend module is imported only when asked for, so ``import lndeploy`` needs none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lndeploy.errors import BadInputError, first_line

BACKENDS = ("onnxruntime", "onnx-reference", "tensorrt", "kserve")


@dataclass(frozen=True)
class TensorMeta:
    """An input or output: ``shape`` holds ints for fixed dims and strings (or None) for dynamic ones,
    or is None for a tensor declared without a shape (any rank).
    ``kind`` is "tensor", or e.g. "sequence" for ONNX values that are not tensors (passed as given)."""

    name: str
    dtype: np.dtype
    shape: tuple
    kind: str = "tensor"


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
        if isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__iter__"):
            raise BadInputError(f"inputs must be a dict of name -> array or a sequence of arrays in input order "
                                f"{names}, got {type(inputs).__name__}")
        inputs = list(inputs)
        if len(inputs) != len(names):
            raise BadInputError(f"{len(inputs)} inputs given, the model takes {len(names)}: {names}")
        items = zip(names, inputs)
    by_name = {m.name: m for m in metas}
    feed, named_sizes = {}, {}
    for name, value in items:
        meta = by_name[name]
        if meta.kind != "tensor":  # a sequence (list of arrays), map or optional: the runtime checks it
            feed[name] = value
            continue
        array = _to_numpy(value, name)
        if meta.shape is None:  # declared without a shape: the runtime checks what the graph needs
            feed[name] = _cast(array, meta, name)
            continue
        if len(array.shape) != len(meta.shape):
            raise BadInputError(f"input {name!r} has rank {array.ndim}, the model expects shape {meta.shape}")
        for i, (got, want) in enumerate(zip(array.shape, meta.shape)):
            if isinstance(want, int) and got != want:
                raise BadInputError(f"input {name!r} dim {i} is {got}, the model expects {want}")
            if isinstance(want, str):
                _check_named_dim(named_sizes, want, got, name, i)
        feed[name] = _cast(array, meta, name)
    return feed


def _check_named_dim(seen: dict, label: str, size: int, name: str, index: int) -> None:
    """In ONNX, dims that share a name have one size; a mismatch would surface as a runtime's
    broadcast or reshape error deep in the graph, so it is named here, at the inputs."""
    first = seen.setdefault(label, (size, name, index))
    if first[0] != size:
        raise BadInputError(f"input {name!r} dim {index} ({label}) is {size}, but input {first[1]!r} dim "
                            f"{first[2]} ({label}) is {first[0]}: dims named alike must be equal")


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or (hasattr(value, "detach") and hasattr(value, "dtype"))


def _cast(array: np.ndarray, meta: TensorMeta, name: str) -> np.ndarray:
    """Floats of another width are converted; a float array for an integer or bool input is refused
    (token ids would be truncated silently)."""
    if meta.dtype is None or array.dtype == meta.dtype:
        return array
    lossy = (array.dtype.kind == "f" or _is_bf16(array.dtype)) and meta.dtype.kind in "iub"
    if lossy or (array.dtype.kind == "c" and meta.dtype.kind != "c"):
        raise BadInputError(f"input {name!r} is {array.dtype}, the model expects {meta.dtype}")
    return array.astype(meta.dtype)


def _is_bf16(dtype) -> bool:
    return dtype.name == "bfloat16"  # ml_dtypes' numpy type (numpy has none)


def _to_numpy(value, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        if getattr(value, "is_meta", False):
            raise BadInputError(f"input {name!r} is a meta tensor (a shape without data): give a tensor with values")
        if str(getattr(value, "layout", "torch.strided")) != "torch.strided":
            raise BadInputError(f"input {name!r} is a {value.layout} tensor: give a dense one (tensor.to_dense())")
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":  # torch cannot hand bf16 to numpy: pass the bits
            import ml_dtypes
            import torch

            return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return tensor.numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as err:  # a ragged nested list, an object numpy cannot hold
        why = first_line(err)[:150]
        raise BadInputError(f"input {name!r} is not a rectangular numeric array: {why}") from None
    if array.dtype.kind not in "biufc" and not _is_bf16(array.dtype):  # str, None, objects
        raise BadInputError(f"input {name!r} is a {type(value).__name__} ({array.dtype}), not a numeric array: "
                            f"give a numpy array or a torch tensor")
    return array
