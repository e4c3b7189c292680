"""ONNX Runtime sessions that say which execution provider actually runs.

onnxruntime-gpu lists CUDA and TensorRT providers even where they cannot load, and then falls back
to the CPU without raising. So the CUDA provider is asked for only when a CUDA driver is present,
and ``provider`` is read back from the session, never assumed. Plugin nodes run through a model-local
reference function (see :mod:`lndeploy.plugin_spec`), added in memory only.
"""

from __future__ import annotations

import ctypes
import functools
import os

from lndeploy import plugin_spec
from lndeploy.backends import TensorMeta, normalize_feed
from lndeploy.errors import BadInputError, UnavailableError

_ORT_TYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
    "tensor(bool)": "bool", "tensor(int16)": "int16",
}


@functools.lru_cache(maxsize=1)
def cuda_driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def default_providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if cuda_driver_present() else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


def _model_bytes(model) -> bytes:
    """Serialized model ready for ORT: a path or a ModelProto; plugin nodes get their reference."""
    import onnx

    if isinstance(model, (str, os.PathLike)):
        from lndeploy.onnxfile import load_model

        model = load_model(model)
    if not isinstance(model, onnx.ModelProto):
        raise BadInputError(f"expected an ONNX model or a path, got {type(model).__name__}")
    if plugin_spec.plugin_nodes(model):
        model = plugin_spec.with_reference_functions(model)
    return model.SerializeToString()


def make_inference_session(model, providers=None, threads: int | None = None, disabled_optimizers=None):
    """``disabled_optimizers``: names of ORT graph transformers to skip (e.g. "SkipLayerNormFusion")."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # errors reach the user as one raised line
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(_model_bytes(model), options, providers=providers or default_providers(),
                                    disabled_optimizers=list(disabled_optimizers or ()))
    except Exception as err:
        if isinstance(err, BadInputError):
            raise
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "NOT_IMPLEMENTED" in str(err):
            # a valid model that this ORT build has no kernel for (e.g. bf16 MatMul on the CPU)
            raise UnavailableError(f"ONNX Runtime here has no kernel for this model ({text}); "
                                   f"try --backend onnx-reference") from err
        raise BadInputError(f"ONNX Runtime cannot load the model: {text}") from err


class OrtSession:
    """``run(inputs) -> {name: array}`` over one ``onnxruntime.InferenceSession``."""

    backend = "onnxruntime"

    def __init__(self, model, providers=None, threads: int | None = None, disabled_optimizers=None):
        self.session = make_inference_session(model, providers, threads, disabled_optimizers)
        self.inputs = [_meta(i) for i in self.session.get_inputs()]
        self.outputs = [_meta(o) for o in self.session.get_outputs()]

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def run(self, inputs) -> dict:
        import numpy as np

        feed = normalize_feed(inputs, self.inputs)
        names = [o.name for o in self.outputs]
        try:
            values = self.session.run(names, feed)
        except Exception as err:
            text = str(err).strip().splitlines()[0]
            raise BadInputError(f"ONNX Runtime failed to run the model: {text}") from err
        return {n: np.asarray(v) for n, v in zip(names, values)}


def _meta(arg) -> TensorMeta:
    import numpy as np

    dtype = _ORT_TYPES.get(arg.type)
    shape = tuple(d if isinstance(d, int) else (d or None) for d in (arg.shape or ()))
    return TensorMeta(arg.name, np.dtype(dtype) if dtype else None, shape)
