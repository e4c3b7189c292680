"""Test inputs generated from a signature (README 'How check decides').

Floats come from a seeded normal distribution, integers uniformly from ``[min, max]`` of the example
tensor, booleans uniformly. Every dynamic dim is varied: dims named like a batch over {1, 3}, other
dynamic dims (sequence lengths, ...) over {1, 7, 64}. Dims that share a name share a value.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import numpy as np

BATCH_SIZES = (1, 3)
OTHER_SIZES = (1, 7, 64)


@dataclass(frozen=True)
class InputSpec:
    """One input's signature: ``shape`` holds ints for fixed dims and names for dynamic ones."""

    name: str
    dtype: np.dtype
    shape: tuple
    low: float = 0.0  # integer inputs: range of the example tensor
    high: float = 1.0


def specs_from_examples(inputs: dict, dynamic_axes: dict) -> list[InputSpec]:
    specs = []
    for name, tensor in inputs.items():
        axes = dynamic_axes.get(name, {})
        shape = tuple(axes.get(i, int(n)) for i, n in enumerate(tensor.shape))
        array = tensor.detach().cpu()
        dtype = torch_to_numpy_dtype(array.dtype)
        low = high = 0.0
        if not array.dtype.is_floating_point and not array.dtype.is_complex and array.numel():
            low, high = float(array.min()), float(array.max())
        specs.append(InputSpec(name, dtype, shape, low, high))
    return specs


def specs_from_onnx(model) -> list[InputSpec]:
    """The signature of an ONNX graph's inputs (initializers listed as inputs excluded); a dynamic
    dim without a name gets one of its own, so it still varies."""
    import onnx

    from lndeploy.onnxfile import graph_inputs

    specs = []
    for value in graph_inputs(model):
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            from lndeploy.errors import BadInputError

            raise BadInputError(f"input {value.name!r} is declared without a shape, so inputs for it cannot be "
                                "generated (declare its shape in the model)")
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        shape = tuple(onnx_dim(value.name, i, d) for i, d in enumerate(tensor.shape.dim))
        specs.append(InputSpec(value.name, dtype, shape, 0.0, 1.0))
    return specs


def onnx_dim(input_name: str, index: int, dim) -> int | str:
    """A graph input's dim: its size when fixed, else its name; an unnamed dynamic dim is called
    ``<input>_dim<index>``, the one label every command uses (build's --shapes, bench's --dim)."""
    if dim.HasField("dim_value") and dim.dim_value > 0:
        return int(dim.dim_value)
    return dim.dim_param or unnamed_dim_label(input_name, index)


def unnamed_dim_label(input_name: str, index: int) -> str:
    return f"{input_name}_dim{index}"


def pin(specs: list[InputSpec], sizes: dict[str, int]) -> list[InputSpec]:
    """The specs with the named dynamic dims in ``sizes`` fixed to those sizes."""
    from dataclasses import replace

    return [replace(s, shape=tuple(sizes.get(d, d) if isinstance(d, str) else d for d in s.shape)) for s in specs]


def torch_to_numpy_dtype(dtype) -> np.dtype:
    import torch

    if dtype == torch.bfloat16:
        from lndeploy.errors import BadInputError

        raise BadInputError("bfloat16 model inputs have no numpy dtype; keep model inputs fp32")
    return torch.empty((), dtype=dtype).numpy().dtype


def dim_names(specs: list[InputSpec]) -> list[str]:
    names = []
    for spec in specs:
        for d in spec.shape:
            if isinstance(d, str) and d not in names:
                names.append(d)
    return names


def sizes_for(dim_name: str, first_dims: set[str]) -> tuple[int, ...]:
    return BATCH_SIZES if "batch" in dim_name.lower() or dim_name in first_dims else OTHER_SIZES


def shape_grid(specs: list[InputSpec]) -> list[dict[str, int]]:
    """Every combination of sizes of the dynamic dims, e.g. [{'batch': 1, 'seq': 1}, ...]."""
    names = dim_names(specs)
    first = {s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], str)}
    choices = [sizes_for(n, first) for n in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*choices)] or [{}]


def concrete_shape(spec: InputSpec, sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(sizes[d] if isinstance(d, str) else d for d in spec.shape)


# the most elements one generated input may have (1 GiB of float32): a fixed dim of 2**40 in a
# file is a bad input, not a MemoryError
MAX_ELEMENTS = 2**28


def generate(specs: list[InputSpec], sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """One feed dict at the given dynamic-dim sizes."""
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in specs:
        shape = concrete_shape(spec, sizes)
        if int(np.prod(shape, dtype=np.float64)) > MAX_ELEMENTS:
            from lndeploy.errors import BadInputError

            raise BadInputError(f"input {spec.name!r} of shape {list(shape)} would have more than {MAX_ELEMENTS} "
                                "elements: too large to generate")
        if spec.dtype.kind == "f" or spec.dtype.name == "bfloat16":  # ml_dtypes' bf16 is kind "V"
            feed[spec.name] = rng.standard_normal(shape).astype(np.float32).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            feed[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feed[spec.name] = rng.integers(int(spec.low), int(spec.high) + 1, shape).astype(spec.dtype)
    return feed


def schedule(specs: list[InputSpec], samples: int | None, seed: int = 0) -> Iterator[tuple[dict, dict]]:
    """(sizes, feed) pairs, generated one at a time as they are drawn (``--samples`` may be large): one
    per grid point, or ``samples`` of them cycling through the grid."""
    grid = shape_grid(specs)
    count = samples if samples else len(grid)
    for i in range(count):
        sizes = grid[i % len(grid)]
        yield sizes, generate(specs, sizes, seed + i)
