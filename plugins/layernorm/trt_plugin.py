"""lndeploy's LayerNorm plugin for TensorRT, registered so that the ONNX parser finds it for our node.

The ONNX node is ``lndeploy.LndeployLayerNorm(X, Scale, B) -> Y`` with attributes ``epsilon``,
``axis`` (negative), ``plugin_version="1"`` and ``plugin_namespace="lndeploy"`` (README 'The LayerNorm plugin').
TensorRT's parser does not know the op, so its fallback plugin importer looks a creator up by
(op_type, plugin_version, plugin_namespace) = ("LndeployLayerNorm", "1", "lndeploy") and passes it the
attributes named in the creator's field names (FLOAT -> float32, INT -> int32 arrays of length 1).

Two registrations, one per runtime:

* full TensorRT >= 10.9: a Quickly Deployable Plugin registered as ``"lndeploy::LndeployLayerNorm"``
  (QDP ids are ``namespace::name``; the creator gets name ``LndeployLayerNorm``, namespace
  ``lndeploy``, version "1", which is exactly the parser's lookup). Only ``aot_impl`` is defined, so the
  plugin is always created in its ahead-of-time form: ``aot_impl`` returns the Triton kernel's PTX
  (from :mod:`lndeploy.plugins.layernorm.aot`) and its launch parameters, TensorRT embeds them in the
  engine, and the engine runs without Python (trtexec, C++). ``autotune`` offers fp32/fp16/bf16 and
  two tactics (default and doubled ``num_warps``) that TensorRT times.
* TensorRT-RTX: its wheel has no ``tensorrt_rtx.plugin`` (the shim imports a missing
  ``tensorrt_rtx_bindings.plugin``), so there is no QDP. A Python ``IPluginV3`` creator is registered
  with ``get_plugin_registry().register_creator(creator, "lndeploy")``: the parser finds it and the
  engine builds on a CPU. Its ``enqueue`` runs the Triton kernel through torch on the GPU, so such
  an engine runs only in a Python process that registered the creator (``lndeploy.Session`` does).

This file deliberately has no ``from __future__ import annotations``: ``tensorrt.plugin`` reads the
type annotations of the decorated functions as objects (``issubclass(annotation, TensorDesc)``).
Attributes are annotated as 1-element numpy arrays, not ``float``/``int``: QDP converts a builtin
attribute with ``float(field.data)``, which NumPy >= 2.4 refuses for a 1-element 1-D array.
"""

import functools
import os

from lndeploy import plugin_spec

PLUGIN_ID = f"{plugin_spec.PLUGIN_NAMESPACE}::{plugin_spec.OP_TYPE}"
FIELDS = ("epsilon", "axis")
_registered = {}  # runtime name -> creator object (kept alive: the registry holds a raw pointer)


def register(runtime) -> str:
    """Register the plugin with ``runtime`` (a ``lndeploy.backends.tensorrt.runtime.Runtime``, or any object with its ``name``, ``trt``, ``version`` and ``is_rtx``); idempotent.

    Returns how engines will run it: ``"aot-kernel-in-engine"`` or ``"python-creator"``.
    """
    if runtime.name in _registered:
        return _registered[runtime.name][0]
    if runtime.is_rtx:
        from lndeploy.trt_env import ensure_rtx_plugin_symlink

        ensure_rtx_plugin_symlink()
        entry = ("python-creator", _register_python_creator(runtime.trt))
    else:
        entry = ("aot-kernel-in-engine", _register_qdp(runtime))
    _registered[runtime.name] = entry
    return entry[0]


# ---------------------------------------------------------------- full TensorRT: Quickly Deployable Plugin

def _register_qdp(runtime):
    from lndeploy.errors import UnavailableError

    trt = runtime.trt
    try:
        import tensorrt.plugin as trtp
    except ImportError as err:
        raise UnavailableError(f"TensorRT {runtime.version} has no tensorrt.plugin module (Quickly Deployable "
                               f"Plugins need TensorRT >= 10.9): {err}") from err
    if not hasattr(trt, "QuickPluginCreationRequest"):
        raise UnavailableError(f"TensorRT {runtime.version} has no ahead-of-time plugins (aot_impl needs "
                               "TensorRT >= 10.9); upgrade TensorRT")
    try:
        _define_qdp(trt, trtp)
    except ValueError as err:
        if "already has a def" not in str(err):  # defined by an earlier import of this module: fine
            raise
    return PLUGIN_ID


def _define_qdp(trt, trtp):
    from typing import List, Tuple, Union

    import numpy as np
    import numpy.typing as npt

    @trtp.register(PLUGIN_ID)
    def _desc(x: trtp.TensorDesc, scale: trtp.TensorDesc, bias: trtp.TensorDesc,
              epsilon: npt.NDArray[np.float32], axis: npt.NDArray[np.int32]) -> trtp.TensorDesc:
        return x.like()

    @trtp.autotune(PLUGIN_ID)
    def _autotune(x: trtp.TensorDesc, scale: trtp.TensorDesc, bias: trtp.TensorDesc,
                  outputs: Tuple[trtp.TensorDesc]) -> List[trtp.AutoTuneCombination]:
        # X, Scale, B and Y share one type (the ONNX schema's T); two tactics for TensorRT to time.
        return [trtp.AutoTuneCombination("FP32|FP16|BF16, FP32|FP16|BF16, FP32|FP16|BF16, FP32|FP16|BF16",
                                         "LINEAR", [1, 2])]

    @trtp.aot_impl(PLUGIN_ID)
    def _aot_impl(x: trtp.TensorDesc, scale: trtp.TensorDesc, bias: trtp.TensorDesc,
                  epsilon: npt.NDArray[np.float32], axis: npt.NDArray[np.int32],
                  outputs: Tuple[trtp.TensorDesc], tactic: int
                  ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
        return aot_launch(trt, trtp, x, scale, epsilon, axis, tactic)


def aot_launch(trt, trtp, x, scale, epsilon, axis, tactic: int):
    """(kernel name, PTX, launch params, extra args) for one plugin instance.

    rows = prod(dims[:axis]) may be dynamic (a symbolic expression); N = prod(dims[axis:]) must be a
    build-time constant, since the kernel's tile width BLOCK_N = next_pow2(N) is compiled in. The
    kernel ABI is aot.ABI: X, Scale, B, rows, N, Y (inputs, i32 extra args, outputs).
    """
    rows, n = split_rows(x.shape_expr, int(axis.reshape(-1)[0]))
    kernel = _compile(_dtype(trt, x.dtype), _dtype(trt, scale.dtype), n, float(epsilon.reshape(-1)[0]),
                      target_arch(), int(tactic))
    params = trtp.KernelLaunchParams()
    per_program = kernel.program_rows
    params.grid_x = (max(1, -(-rows // per_program)) if isinstance(rows, int)
                     else trtp.cdiv(rows, per_program))
    params.block_x = kernel.threads_per_block
    params.shared_mem = kernel.shared_mem
    extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(rows), trtp.SymInt32(n)])
    return kernel.name, kernel.ptx, params, extra


def split_rows(dims, axis: int):
    """(rows, N) of a shape: N = product of dims[axis:] (must be build-time constants), rows = product of
    dims[:axis] (a symbolic expression when dynamic). ``dims``: TensorRT shape expressions or ints."""
    rank = len(dims)
    if not -rank <= axis < 0:
        raise ValueError(f"LndeployLayerNorm axis {axis} is out of range for rank {rank}")
    first = axis % rank
    n = 1
    for d in range(first, rank):
        value = _constant(dims[d])
        if value is None:
            raise ValueError(f"LndeployLayerNorm needs the normalized dims (from axis {axis}) fixed at "
                             f"build time; dim {d} is dynamic")
        n *= value
    rows = 1
    for d in range(first):
        value = _constant(dims[d])
        if value is not None and isinstance(rows, int):
            rows *= value
        else:  # symbolic from here on: int * expr is not defined, expr * int is
            rows = dims[d] * rows if isinstance(rows, int) else rows * dims[d]
    return rows, n


def _constant(dim):
    if isinstance(dim, int):
        return dim
    return dim.constant_value() if dim.is_constant else None


def _dtype(trt, dtype) -> str:
    names = {trt.DataType.FLOAT: "fp32", trt.DataType.HALF: "fp16", trt.DataType.BF16: "bf16"}
    if dtype not in names:
        raise ValueError(f"LndeployLayerNorm runs fp32, fp16 and bf16, got {dtype}")
    return names[dtype]


def target_arch() -> int:
    """The PTX target: ``LNDEPLOY_PTX_ARCH`` if set, else the build GPU's compute capability rounded
    down to one aot.compile_ptx supports (PTX is JIT-compiled forward on newer GPUs), else 80."""
    from lndeploy.plugins.layernorm import aot

    if os.environ.get("LNDEPLOY_PTX_ARCH"):
        return int(os.environ["LNDEPLOY_PTX_ARCH"])
    from lndeploy.trt_env import cuda_gpu

    gpu = cuda_gpu()
    sm = gpu["sm"] if gpu else 80
    return max([a for a in aot.ARCHS if a <= sm] or [min(aot.ARCHS)])


@functools.lru_cache(maxsize=64)
def _compile(dtype: str, weight_dtype: str, n: int, eps: float, arch: int, tactic: int):
    from lndeploy.plugins.layernorm import aot, kernel

    block_n = kernel.block_n_for(n)
    warps = None  # tactic 1: the kernel's own (dtype-aware) rule, as compile_ptx applies it
    if tactic == 2:
        warps = min(kernel.MAX_WARPS, 2 * kernel.launch_config(1 << 30, block_n, dtype)["num_warps"])
    return aot.compile_ptx(dtype, block_n, arch, eps=eps, weight_dtype=weight_dtype, num_warps=warps,
                           n_multiple_of_16=n % 16 == 0)


# ---------------------------------------------------------------- TensorRT-RTX: Python IPluginV3 creator

def _register_python_creator(trt):
    registry = trt.get_plugin_registry()
    name, version, namespace = plugin_spec.OP_TYPE, plugin_spec.PLUGIN_VERSION, plugin_spec.PLUGIN_NAMESPACE
    existing = registry.get_creator(name, version, namespace)
    if existing is not None:
        return existing
    creator = _creator_class(trt)()
    if not registry.register_creator(creator, namespace):
        from lndeploy.errors import UnavailableError

        raise UnavailableError(f"TensorRT-RTX refused to register the {namespace}::{name} plugin creator")
    return creator


@functools.lru_cache(maxsize=None)
def _creator_class(trt):
    import numpy as np

    plugin_cls = _plugin_class(trt)

    class LayerNormCreator(trt.IPluginCreatorV3One):
        def __init__(self):
            trt.IPluginCreatorV3One.__init__(self)
            self.name = plugin_spec.OP_TYPE
            self.plugin_namespace = plugin_spec.PLUGIN_NAMESPACE
            self.plugin_version = plugin_spec.PLUGIN_VERSION
            self.field_names = trt.PluginFieldCollection([
                trt.PluginField("epsilon", np.array([], np.float32), trt.PluginFieldType.FLOAT32),
                trt.PluginField("axis", np.array([], np.int32), trt.PluginFieldType.INT32)])

        def create_plugin(self, name, fc, phase):
            values = {f.name: np.asarray(f.data).reshape(-1) for f in fc if f.name in FIELDS}
            missing = [k for k in FIELDS if k not in values or values[k].size != 1]
            if missing:
                raise ValueError(f"{plugin_spec.OP_TYPE} node {name!r} lacks attribute(s) {missing}")
            return plugin_cls(float(values["epsilon"][0]), int(values["axis"][0]), phase)

    return LayerNormCreator


@functools.lru_cache(maxsize=None)
def _plugin_class(trt):
    import numpy as np

    float_types = (trt.DataType.FLOAT, trt.DataType.HALF, trt.DataType.BF16)

    class LayerNormPlugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        def __init__(self, epsilon=1e-5, axis=-1, phase=None):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.num_outputs = 1
            self.plugin_name = plugin_spec.OP_TYPE
            self.plugin_namespace = plugin_spec.PLUGIN_NAMESPACE
            self.plugin_version = plugin_spec.PLUGIN_VERSION
            self.epsilon, self.axis, self.phase = float(epsilon), int(axis), phase

        def get_capability_interface(self, _type):
            return self

        def get_output_data_types(self, input_types):
            return [input_types[0]]

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            return [trt.DimsExprs(inputs[0])]

        def supports_format_combination(self, pos, in_out, num_inputs):
            desc = in_out[pos].desc
            if desc.format != trt.TensorFormat.LINEAR:
                return False
            if pos == 0:
                return desc.type in float_types
            x_type = in_out[0].desc.type
            return desc.type == x_type or (pos in (1, 2) and desc.type == trt.DataType.FLOAT)

        def configure_plugin(self, inputs, outputs):
            pass

        def on_shape_change(self, inputs, outputs):
            pass

        def get_fields_to_serialize(self):
            return trt.PluginFieldCollection([
                trt.PluginField("epsilon", np.array([self.epsilon], np.float32), trt.PluginFieldType.FLOAT32),
                trt.PluginField("axis", np.array([self.axis], np.int32), trt.PluginFieldType.INT32)])

        def get_valid_tactics(self):
            return []

        def set_tactic(self, tactic):
            pass

        def attach_to_context(self, context):
            return self.clone()

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            run_on_gpu(trt, input_desc, inputs, outputs[0], self.epsilon, self.axis, stream)
            return 0

        def clone(self):
            twin = LayerNormPlugin(self.epsilon, self.axis, self.phase)
            twin.__dict__.update(self.__dict__)
            return twin

    return LayerNormPlugin


def run_on_gpu(trt, input_desc, inputs, output_ptr, eps: float, axis: int, stream: int) -> None:
    """The RTX plugin's enqueue: view TensorRT's device pointers as torch tensors (no copy) and run the
    Triton kernel on TensorRT's stream."""
    import torch

    dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
              trt.DataType.BF16: torch.bfloat16}
    shape = tuple(input_desc[0].dims)
    n = normalized_numel(shape, axis)
    x = device_tensor(inputs[0], shape, dtypes[input_desc[0].type])
    w = device_tensor(inputs[1], (n,), dtypes[input_desc[1].type])
    b = device_tensor(inputs[2], (n,), dtypes[input_desc[2].type])
    y = device_tensor(output_ptr, shape, dtypes[input_desc[0].type])
    with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
        launch(x, w, b, y, eps, n)


def normalized_numel(shape, axis: int) -> int:
    """N = prod(shape[axis:]) for a negative ``axis``."""
    rank = len(shape)
    if not -rank <= axis < 0:
        raise ValueError(f"LndeployLayerNorm axis {axis} is out of range for rank {rank}")
    n = 1
    for d in shape[axis % rank:]:
        n *= int(d)
    return n


def launch(x, w, b, y, eps: float, n: int) -> None:
    """Run the kernel on the current stream, writing into ``y`` (TensorRT owns the output buffer).
    Through ``kernel.layer_norm(out=...)``: the raw kernel's parameter order follows the AOT ABI."""
    from lndeploy.plugins.layernorm import kernel

    kernel.layer_norm(x, w, b, float(eps), n, out=y)


class _CudaBuffer:
    """A raw device pointer in ``__cuda_array_interface__`` form, so torch can view it without a copy."""

    def __init__(self, ptr: int, shape: tuple, typestr: str):
        self.__cuda_array_interface__ = {"shape": tuple(int(d) for d in shape), "typestr": typestr,
                                         "data": (int(ptr), False), "version": 3, "strides": None}


def device_tensor(ptr: int, shape: tuple, dtype):
    """A torch CUDA tensor over ``ptr`` (dense, row-major) of torch ``dtype``."""
    import torch

    if dtype == torch.bfloat16:  # no numpy typestr for bf16: view 16-bit ints as bf16
        return torch.as_tensor(_CudaBuffer(ptr, shape, "<i2"), device="cuda").view(torch.bfloat16)
    typestr = {torch.float32: "<f4", torch.float16: "<f2"}[dtype]
    return torch.as_tensor(_CudaBuffer(ptr, shape, typestr), device="cuda")
