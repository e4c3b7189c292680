"""``TrtSession``: run a TensorRT engine with the same ``run`` as the ONNX sessions.

Device buffers are torch CUDA tensors (no pycuda or cuda-python needed). Before anything touches the
GPU, the engine's sidecar is checked against what is installed here: an engine runs only on the
runtime version that built it and on a GPU it was built for, and a mismatch is one line (exit 3),
not a deserialization error deep inside TensorRT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lndeploy.backends import TensorMeta, normalize_feed
from lndeploy.backends.base import Runner
from lndeploy.backends.tensorrt import sidecar
from lndeploy.backends.tensorrt.network import make_logger
from lndeploy.backends.tensorrt.runtime import load, require_gpu
from lndeploy.errors import BadInputError


class TrtSession(Runner):
    """``run(inputs) -> {name: numpy array}`` over one deserialized engine and execution context."""

    backend = "tensorrt"

    def __init__(self, engine_path, runtime: str | None = None):
        path = Path(engine_path)
        if not path.is_file():
            raise BadInputError(f"engine not found: {path}")
        facts = sidecar.read(path)
        # a replaced or truncated file is bad input on any machine: say so before asking for a GPU
        expected = (facts or {}).get("engine", {}).get("size_bytes")
        if expected is not None and expected != path.stat().st_size:
            raise BadInputError(f"{path} is {path.stat().st_size} bytes, its sidecar says {expected}: the "
                                "engine was replaced or truncated; rebuild it with lndeploy build")
        rt = load(facts["runtime"]["name"] if facts else runtime)
        gpu = require_gpu(f"running a {rt.label} engine")
        if facts:
            sidecar.check_compatible(facts, rt, gpu, path)
        if rt.is_rtx and (facts is None or facts.get("plugins")):
            from lndeploy.plugins.layernorm import trt_plugin

            trt_plugin.register(rt)  # RTX engines call back into lndeploy's Python plugin creator
        self.runtime, self.gpu, self.facts, self.path = rt, gpu, facts or {}, path
        self._logger = make_logger(rt.trt)
        self._trt_runtime = rt.trt.Runtime(self._logger)
        self.engine = self._trt_runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            errors = self._logger.errors()
            raise BadInputError(f"{rt.label} {rt.version} cannot load {path}: "
                                f"{errors[-1] if errors else 'not an engine of this runtime'}")
        self.context = self.engine.create_execution_context()
        self.inputs, self.outputs = self._metas()

    @property
    def provider(self) -> str:
        return f"{self.runtime.label} {self.runtime.version} on {self.gpu['name']} (sm{self.gpu['sm']})"

    def _metas(self):
        trt, engine = self.runtime.trt, self.engine
        labels = {i["name"]: i["dims"] for i in self.facts.get("inputs", [])}
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dims = tuple(engine.get_tensor_shape(name))
            named = labels.get(name, [None] * len(dims))
            shape = tuple(d if d >= 0 else (named[k] if k < len(named) and isinstance(named[k], str) else None)
                          for k, d in enumerate(dims))
            meta = TensorMeta(name, _numpy_dtype(trt, engine.get_tensor_dtype(name)), shape)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(meta)
        return inputs, outputs

    def run_impl(self, inputs) -> dict:
        import torch

        feed = normalize_feed(inputs, self.inputs)
        trt, context, engine = self.runtime.trt, self.context, self.engine
        keep = []  # device tensors must outlive the launch
        for meta in self.inputs:
            array = np.ascontiguousarray(feed[meta.name])
            self._check_profile(meta.name, array.shape)
            tensor = torch.from_numpy(array).to("cuda")
            if engine.get_tensor_dtype(meta.name) == trt.DataType.BF16:
                tensor = tensor.to(torch.bfloat16)
            context.set_input_shape(meta.name, tuple(array.shape))
            context.set_tensor_address(meta.name, tensor.data_ptr())
            keep.append(tensor)
        results = {}
        for meta in self.outputs:
            shape = tuple(context.get_tensor_shape(meta.name))
            if any(d < 0 for d in shape):
                raise BadInputError(f"output {meta.name!r} has a data-dependent shape {shape}, which lndeploy's "
                                    "TensorRT session does not support")
            out = torch.empty(shape, dtype=_torch_dtype(trt, engine.get_tensor_dtype(meta.name)), device="cuda")
            context.set_tensor_address(meta.name, out.data_ptr())
            results[meta.name] = out
        stream = torch.cuda.current_stream()
        if not context.execute_async_v3(stream.cuda_stream):
            errors = self._logger.errors()
            raise BadInputError(f"{self.runtime.label} failed to run {self.path}: "
                                f"{errors[-1] if errors else 'enqueue failed'}")
        stream.synchronize()
        return {name: _to_numpy(t) for name, t in results.items()}

    @property
    def is_rtx(self) -> bool:
        return self.runtime.is_rtx

    def release(self) -> None:
        self.context = self.engine = None

    def _check_profile(self, name: str, shape: tuple) -> None:
        low, _opt, high = (tuple(s) for s in self.engine.get_tensor_profile_shape(name, 0))
        if len(shape) != len(low) or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
            raise BadInputError(f"input {name!r} has shape {tuple(shape)}; this engine accepts {low} to {high} "
                                "(rebuild with a wider --shapes range)")


def _numpy_dtype(trt, dtype):
    if dtype == trt.DataType.BF16:  # no numpy bf16: fed and returned as float32
        return np.dtype(np.float32)
    return np.dtype(trt.nptype(dtype))


def _torch_dtype(trt, dtype):
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.BF16: torch.bfloat16,
             trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64, trt.DataType.BOOL: torch.bool,
             trt.DataType.INT8: torch.int8, trt.DataType.UINT8: torch.uint8}
    return table[dtype]


def _to_numpy(tensor) -> np.ndarray:
    import torch

    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.cpu().numpy()
