"""Optimization profiles: a (min, opt, max) size for every dynamic dim of the model's inputs.

A dynamic dim is known by its label: the ONNX ``dim_param`` (``batch``, ``seq``, ...) or, for an
unnamed dim, ``INPUT.INDEX``. Inputs that share a label share its range, so the profile is always
consistent (TensorRT rejects shapes whose shared dims disagree at run time).

Ranges, per dim::

    default            min 1, opt = max = 8 for batch dims (named like "batch", or dim 0), 64 for others
    model example      min 1, opt = example size, max = max(example size, default max)
    --shapes override  exactly what is given, 1 <= min <= opt <= max (one size: min = opt = max)

The default max covers the sizes ``lndeploy check`` feeds (batch 1 and 3, other dims 1, 7 and 64).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lndeploy.errors import BadInputError
from lndeploy.inputs import onnx_dim
from lndeploy.onnxfile import graph_inputs

DEFAULT_BATCH = 8
DEFAULT_OTHER = 64


@dataclass(frozen=True)
class InputDims:
    """One graph input: ``dims`` holds ints for fixed dims and labels (str) for dynamic ones."""

    name: str
    dims: tuple
    elem_type: int

    @property
    def dynamic(self) -> list[tuple[int, str]]:
        return [(i, d) for i, d in enumerate(self.dims) if isinstance(d, str)]


def onnx_inputs(model) -> list[InputDims]:
    """The real inputs of an ONNX graph (initializers listed as inputs by old exporters excluded)."""
    out = []
    for value in graph_inputs(model):
        tensor = value.type.tensor_type
        dims = tuple(onnx_dim(value.name, i, d) for i, d in enumerate(tensor.shape.dim))
        out.append(InputDims(value.name, dims, tensor.elem_type))
    return out


def is_batch_like(label: str, index: int) -> bool:
    return "batch" in label.lower() or index == 0


def default_range(label: str, index: int) -> tuple[int, int, int]:
    top = DEFAULT_BATCH if is_batch_like(label, index) else DEFAULT_OTHER
    return (1, top, top)


def parse_shapes_option(values) -> dict:
    """CLI ``NAME:MIN,OPT,MAX`` items -> {NAME: (min, opt, max)}; each of the three is ``N`` or ``AxBxC``.
    ``NAME:SIZE`` alone fixes the size (min = opt = max), as trtexec's ``--shapes`` does."""
    out = {}
    for item in values or ():
        name, sep, spec = str(item).rpartition(":")
        parts = spec.split(",")
        if len(parts) == 1:
            parts = parts * 3
        if not sep or not name or len(parts) != 3:
            raise BadInputError(f"--shapes {item!r}: expected NAME:MIN,OPT,MAX or NAME:SIZE "
                                f"(e.g. batch:1,8,32, x:1x16,4x16,8x16 or x:4x16)")
        try:
            triple = tuple(_size(p) for p in parts)
        except ValueError:
            raise BadInputError(f"--shapes {item!r}: sizes must be integers or AxBxC shapes") from None
        if name in out:
            raise BadInputError(f"--shapes names {name!r} twice")
        out[name] = triple
    return out


def _size(text: str):
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    if re.fullmatch(r"\d+(x\d+)+", text):
        return tuple(int(v) for v in text.split("x"))
    raise ValueError(text)


def plan_profile(inputs: list[InputDims], shapes: dict | None = None, examples: dict | None = None) -> dict:
    """Ranges for every dynamic label, then min/opt/max shapes per input.

    ``examples``: input name -> concrete example shape (from a model file). ``shapes``: overrides keyed
    by dim label or input name (see module doc). Returns ``{"dims": {label: [min, opt, max]},
    "inputs": {name: {"min": [...], "opt": [...], "max": [...]}}}``.
    """
    ranges = {}
    for inp in inputs:
        for index, label in inp.dynamic:
            ranges.setdefault(label, default_range(label, index))
    for inp in inputs:
        for index, label in inp.dynamic:
            size = _example_size(examples, inp, index)
            if size is not None:
                low, _, top = default_range(label, index)
                ranges[label] = (low, size, max(size, top))
    for label, triple in _overrides(inputs, shapes or {}).items():
        ranges[label] = triple
    return {"dims": {k: list(v) for k, v in ranges.items()},
            "inputs": {inp.name: _input_profile(inp, ranges) for inp in inputs}}


def _example_size(examples, inp: InputDims, index: int):
    if not examples or inp.name not in examples:
        return None
    shape = tuple(examples[inp.name])
    if len(shape) != len(inp.dims):
        raise BadInputError(f"the model's example input {inp.name!r} has rank {len(shape)}, the ONNX input "
                            f"has rank {len(inp.dims)}: is this ONNX file exported from that model?")
    return int(shape[index]) if shape[index] >= 1 else None


def _overrides(inputs: list[InputDims], shapes: dict) -> dict:
    """Translate overrides by label or by input name into label -> (min, opt, max), validated."""
    by_input = {inp.name: inp for inp in inputs}
    labels = {label for inp in inputs for _, label in inp.dynamic}
    out = {}
    for key, triple in shapes.items():
        triple = _as_triple(key, triple)
        if key in labels:
            out[key] = _check_range(key, triple)
        elif key in by_input:
            out.update(_input_override(by_input[key], triple))
        else:
            raise BadInputError(f"--shapes names {key!r}, which is neither a dynamic dim ({_names(labels)}) "
                                f"nor an input ({_names(by_input)}) of the model")
    return out


def _as_triple(key, triple) -> tuple:
    if not isinstance(triple, (tuple, list)) or len(triple) != 3:
        raise BadInputError(f"shapes[{key!r}] must be (min, opt, max), got {triple!r}")
    return tuple(tuple(v) if isinstance(v, (tuple, list)) else v for v in triple)


def _input_override(inp: InputDims, triple: tuple) -> dict:
    if all(isinstance(v, int) for v in triple):
        if len(inp.dynamic) != 1:
            raise BadInputError(f"input {inp.name!r} has {len(inp.dynamic)} dynamic dims {inp.dims}: give full "
                                f"shapes ({inp.name}:MINx..,OPTx..,MAXx..) or name the dims")
        return {inp.dynamic[0][1]: _check_range(inp.name, triple)}
    if not all(isinstance(v, tuple) and len(v) == len(inp.dims) for v in triple):
        raise BadInputError(f"shapes for input {inp.name!r} must be 3 shapes of rank {len(inp.dims)} "
                            f"(its dims are {list(inp.dims)}), got {triple!r}")
    out = {}
    for i, dim in enumerate(inp.dims):
        column = tuple(int(shape[i]) for shape in triple)
        if isinstance(dim, int):
            if set(column) != {dim}:
                raise BadInputError(f"input {inp.name!r} dim {i} is fixed at {dim}; shapes give {list(column)}")
        else:
            out[dim] = _check_range(f"{inp.name} dim {i} ({dim})", column)
    return out


def _check_range(what: str, triple: tuple) -> tuple[int, int, int]:
    low, opt, top = (int(v) for v in triple)
    if not 1 <= low <= opt <= top:
        raise BadInputError(f"shape range for {what} is out of order: need 1 <= min <= opt <= max, "
                            f"got min {low}, opt {opt}, max {top}")
    return (low, opt, top)


def _input_profile(inp: InputDims, ranges: dict) -> dict:
    def pick(k):
        return [ranges[d][k] if isinstance(d, str) else d for d in inp.dims]

    return {"min": pick(0), "opt": pick(1), "max": pick(2)}


def _names(items) -> str:
    return ", ".join(sorted(items)) or "none"
