"""What a Triton model config must say about an artifact: its inputs and outputs, with data types,
dims (ints for fixed dims, labels for dynamic ones) and, for engines, the optimization profile's range
of every dynamic dim.

ONNX files are read directly. Engines are read through their sidecar (``lndeploy build`` writes it):
its profile gives the ranges and its source ONNX the data types and output dims (a TensorRT-RTX engine
cannot be deserialized without a GPU, and a strongly typed engine keeps the ONNX file's I/O types).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lndeploy.backends.tensorrt.sidecar import ENGINE_SUFFIXES, is_engine
from lndeploy.errors import BadInputError
from lndeploy.fileio import file_sha256

# numpy dtype name -> Triton's DataType (model_config.proto)
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "float64": "TYPE_FP64",
                "int64": "TYPE_INT64", "int32": "TYPE_INT32", "int16": "TYPE_INT16", "int8": "TYPE_INT8",
                "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32", "uint64": "TYPE_UINT64",
                "bool": "TYPE_BOOL"}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # numpy dtype name
    dims: tuple  # ints for fixed dims, labels (str) for dynamic ones

    @property
    def triton_type(self) -> str:
        if self.dtype not in TRITON_TYPES:
            raise BadInputError(f"tensor {self.name!r} is {self.dtype}, which Triton has no type for")
        return TRITON_TYPES[self.dtype]


@dataclass
class Signature:
    path: Path
    kind: str  # "onnx" or "plan"
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    ranges: dict = field(default_factory=dict)  # engines: dim label -> (min, opt, max)
    plugin_nodes: int = 0
    plugin_mode: str | None = None  # engines: how the plugin runs ("python-creator", "aot-kernel-in-engine")
    model: object = None  # ONNX: the loaded ModelProto

    def batch_label(self) -> str | None:
        """The label of dim 0 when every input and output starts with that one dynamic dim (Triton's
        batch dim, left out of ``dims`` when ``max_batch_size > 0``); else None."""
        tensors = self.inputs + self.outputs
        first = tensors[0].dims[0] if tensors and tensors[0].dims else None
        if not isinstance(first, str):
            return None
        if all(t.dims and t.dims[0] == first for t in tensors):
            return first
        return None

    def is_fixed(self, dim) -> bool:
        """A dim Triton sees as fixed: an int, or an engine dim whose profile allows one size only."""
        if isinstance(dim, int):
            return True
        low, _, high = self.ranges.get(dim, (None, None, None))
        return low is not None and low == high

    def size(self, dim) -> int:
        """``dims`` entry for Triton: the size of a fixed dim, -1 for a dynamic one."""
        if isinstance(dim, int):
            return dim
        return self.ranges[dim][0] if self.is_fixed(dim) else -1


def read(path) -> Signature:
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"artifact not found: {path}")
    if is_engine(path):
        return _read_engine(path)
    if path.suffix != ".onnx":
        raise BadInputError(f"{path}: expected an ONNX file (.onnx) or a TensorRT engine ({', '.join(ENGINE_SUFFIXES)})")
    from lndeploy import plugin_spec
    from lndeploy.onnxfile import load_model

    model = load_model(path)
    sig = _onnx_signature(model, path, "onnx")
    sig.plugin_nodes, sig.model = len(plugin_spec.plugin_nodes(model)), model
    return sig


def _onnx_signature(model, path: Path, kind: str) -> Signature:
    from lndeploy.onnxfile import graph_inputs, value_kind

    sig = Signature(path, kind)
    for values, into in ((graph_inputs(model), sig.inputs), (model.graph.output, sig.outputs)):
        for value in values:
            if value_kind(value) != "tensor":
                raise BadInputError(f"{path}: {value.name!r} is a {value_kind(value)}, not a tensor; Triton's "
                                    "backends serve tensors only")
            into.append(_tensor(value, path))
    return sig


def _tensor(value, path: Path) -> Tensor:
    from onnx import helper

    from lndeploy.inputs import onnx_dim

    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        raise BadInputError(f"{path}: {value.name!r} has no shape in the graph (Triton's config needs its dims): "
                            "declare one for an input; for an output, run shape inference (onnx.shape_inference) "
                            "and save the model again")
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name
    return Tensor(value.name, dtype, tuple(onnx_dim(value.name, i, d) for i, d in enumerate(tensor.shape.dim)))


def _read_engine(path: Path) -> Signature:
    """An engine's signature: I/O from its source ONNX (checked by sha256), ranges from its profile."""
    from lndeploy.backends.tensorrt import sidecar
    from lndeploy.onnxfile import load_model

    facts = sidecar.read(path)
    if facts is None:
        raise BadInputError(f"{path} has no sidecar ({sidecar.sidecar_path(path).name}): lndeploy reads an "
                            "engine's inputs and profile from it; build the engine with lndeploy build")
    source = facts.get("source_onnx", {})
    onnx_path = Path(source.get("path", ""))
    if not onnx_path.is_file():
        onnx_path = path.parent / onnx_path.name  # moved together with the engine
    if not onnx_path.is_file() or file_sha256(onnx_path) != source.get("sha256"):
        raise BadInputError(f"{path}: its source ONNX {source.get('path')} (sha256 {str(source.get('sha256'))[:12]}) "
                            "is not beside it or has changed; lndeploy reads the engine's output types from it")
    sig = _onnx_signature(load_model(onnx_path), path, "plan")
    sig.ranges = {label: tuple(r) for label, r in (facts.get("dims") or {}).items()}
    plugins = facts.get("plugins") or {}
    sig.plugin_nodes, sig.plugin_mode = len(plugins.get("nodes") or []), plugins.get("mode")
    labelled = {i["name"]: tuple(i["dims"]) for i in facts.get("inputs", [])}
    for tensor in sig.inputs:
        if labelled.get(tensor.name, tensor.dims) != tensor.dims:
            raise BadInputError(f"{path}: input {tensor.name!r} is {labelled[tensor.name]} in the sidecar but "
                                f"{tensor.dims} in the source ONNX")
    return sig
