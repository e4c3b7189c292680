"""A model's outputs as the exporter sees them: tensor leaves of the returned structure, named.

torch's exporter flattens whatever ``forward`` returns (tuples, lists, dicts, ``transformers``'
``ModelOutput``, nested) depth-first in insertion order and drops ``None`` leaves. Naming, the
verification after export and the PyTorch runner of ``check`` must walk the outputs the same way, or
outputs get paired with the wrong reference. Other leaves (a Python number, a string) cannot be
graph outputs: they are refused with the place they occur.
"""

from __future__ import annotations

from lndeploy.errors import BadInputError


def output_leaves(result) -> list[tuple[tuple, object]]:
    """(path, tensor) for every tensor in ``result``, in the exporter's order; ``None`` left out.
    A path holds dict keys (str) and sequence indices (int)."""
    import torch

    leaves = []

    def walk(value, path):
        if value is None:
            return
        if isinstance(value, torch.Tensor):
            leaves.append((path, value))
        elif isinstance(value, dict):  # also transformers' ModelOutput (an OrderedDict of its set fields)
            for key, item in value.items():
                walk(item, path + (str(key),))
        elif isinstance(value, (tuple, list)):
            for index, item in enumerate(value):
                walk(item, path + (index,))
        else:
            where = _join(path) or "the returned value"
            kind = type(value).__name__
            # a transformers KV cache (DynamicCache...) is the common case, and torch.tensor() is no fix for it
            fix = ("build the model with use_cache=False" if kind.endswith("Cache")
                   else "return a tensor (torch.tensor(...)) or leave it out")
            raise BadInputError(f"forward() returns {_article(kind)} {kind} at output {where}: only tensors (or "
                                f"None) can be ONNX outputs; {fix}")

    walk(result, ())
    if not leaves:
        raise BadInputError("forward() returns no tensor: there is nothing to export")
    return leaves


def output_names(result) -> list[str]:
    """``output`` for a single unnamed tensor, ``output_0..`` for a tuple of tensors, dict keys for
    dicts (``hidden_states.0`` for a tuple inside a dict; ``output_1.a`` for a dict inside a tuple)."""
    paths = [path for path, _ in output_leaves(result)]
    if len(paths) == 1 and all(isinstance(p, int) for p in paths[0]):
        return ["output"]
    if all(all(isinstance(p, int) for p in path) for path in paths):
        return [f"output_{i}" for i in range(len(paths))]
    return [_join(path) for path in paths]


def _join(path: tuple) -> str:
    parts = [str(p) for p in path]
    if path and isinstance(path[0], int):
        parts[0] = f"output_{path[0]}"
    return ".".join(parts)


def output_arrays(result) -> list:
    """The tensor leaves as float64 numpy arrays (integer and bool outputs too), in export order."""
    return [tensor.detach().cpu().double().numpy() for _, tensor in output_leaves(result)]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
