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
import re

from lndeploy import plugin_spec
from lndeploy.backends import TensorMeta, normalize_feed
from lndeploy.backends.base import Runner
from lndeploy.errors import BadInputError, UnavailableError, first_line

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


def _load(model):
    """A path or a ModelProto -> a ModelProto whose plugin nodes have their reference function."""
    import onnx

    if isinstance(model, (str, os.PathLike)):
        from lndeploy.onnxfile import load_model

        model = load_model(model)
    if not isinstance(model, onnx.ModelProto):
        raise BadInputError(f"expected an ONNX model or a path, got {type(model).__name__}")
    if plugin_spec.plugin_nodes(model):
        model = plugin_spec.with_reference_functions(model)
    return model


_IR_REFUSED = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")


def _lower_ir_version(model, err: Exception):
    """A copy of ``model`` at the highest IR version this ORT reads, or None where that would be wrong.

    onnx 1.23 writes IR version 14 by default (``helper.make_model``), which ORT 1.31 refuses although
    the model uses nothing newer than opset 17: the IR version only bounds which features a file *may*
    use. Lowered only when the model's opsets need no newer IR (``find_min_ir_version_for``); a model
    that really uses a newer type still fails, on that type, with ORT's own message.
    """
    import onnx

    found = _IR_REFUSED.search(str(err))
    if not found:
        return None
    ceiling = int(found.group(2))
    try:
        needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    except Exception:  # an opset onnx does not know: do not guess
        return None
    if needed > ceiling:
        return None
    lowered = onnx.ModelProto()
    lowered.CopyFrom(model)
    lowered.ir_version = ceiling
    return lowered


def make_inference_session(model, providers=None, threads: int | None = None, disabled_optimizers=None,
                           optimize: bool = True):
    """``disabled_optimizers``: names of ORT graph transformers to skip (e.g. "SkipLayerNormFusion").
    ``optimize=False`` runs the graph as written (no ORT graph rewrites at all): the reference side of
    a rewrite's verification, which ORT's own LayerNorm fusion would otherwise blur. ``model`` is a
    ModelProto as ``_load`` gives it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # errors reach the user as one raised line
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1

    disabled = list(disabled_optimizers or ()) + [n for n in _crashing_optimizers(model) if n not in
                                                  (disabled_optimizers or ())]

    def create(proto):
        return ort.InferenceSession(proto.SerializeToString(), options, providers=providers or default_providers(),
                                    disabled_optimizers=disabled)

    try:
        try:
            return create(model)
        except Exception as err:
            lowered = _lower_ir_version(model, err)
            if lowered is None:
                raise
            return create(lowered)
    except Exception as err:
        text = first_line(err)
        too_new = _IR_REFUSED.search(str(err))
        if "NOT_IMPLEMENTED" in str(err) or too_new:
            # a valid model that this ORT build cannot run (e.g. bf16 MatMul on the CPU, a newer IR)
            reason = (f"ONNX Runtime {ort.__version__} reads IR versions up to {too_new.group(2)}, and the model "
                      f"needs {too_new.group(1)}" if too_new else f"ONNX Runtime here has no kernel for this model ({text})")
            error = UnavailableError(f"{reason}; try --backend onnx-reference")
            error.reason = reason  # without the hint, for callers (bench) that have no such option
            raise error from err
        raise BadInputError(f"ONNX Runtime cannot load the model: {text}") from err


def _crashing_optimizers(model) -> list[str]:
    """ORT graph transformers that crash the process on this model (a segfault cannot be caught).

    ORT 1.31's MatmulTransposeFusion segfaults while the session is created on fp16 ``Transpose ->
    MatMul`` (e.g. Cast(fp32 -> fp16) -> Transpose(perm [1, 0, 2]) -> MatMul, as torch exports
    nn.MultiheadAttention's batch_first=False layout in an fp16 plan). Its fused kernel is worth
    little next to the Casts an fp16 graph runs on the CPU, so fp16 graphs go without it."""
    from onnx import TensorProto

    half = TensorProto.FLOAT16
    for graph in plugin_spec.iter_graphs(model.graph):
        if any(t.data_type == half for t in graph.initializer):
            return ["MatmulTransposeFusion"]
        for node in graph.node:
            if node.op_type == "Cast" and any(a.name == "to" and a.i == half for a in node.attribute):
                return ["MatmulTransposeFusion"]
    return []


class OrtSession(Runner):
    """``run(inputs) -> {name: array}`` over one ``onnxruntime.InferenceSession``."""

    backend = "onnxruntime"

    def __init__(self, model, providers=None, threads: int | None = None, disabled_optimizers=None,
                 optimize: bool = True):
        model = _load(model)
        self._session = make_inference_session(model, providers, threads, disabled_optimizers, optimize)
        self.disabled_optimizers = tuple(disabled_optimizers or ())
        # ORT reports [] for an input declared without a shape and for a scalar alike; only the
        # model tells them apart (shape None: any rank is accepted, ORT checks what the graph needs)
        shapeless = {v.name for v in model.graph.input
                     if v.type.HasField("tensor_type") and not v.type.tensor_type.HasField("shape")}
        self.inputs = [_meta(i, i.name in shapeless) for i in self._session.get_inputs()]
        self.outputs = [_meta(o) for o in self._session.get_outputs()]
        # bf16 tensors cannot cross ORT's numpy bridge: such a session runs on OrtValues
        self.needs_ort_values = any(m.dtype is not None and m.dtype.name == "bfloat16"
                                    for m in self.inputs + self.outputs)

    @property
    def provider(self) -> str:
        return self._session.get_providers()[0]

    def run_impl(self, inputs) -> dict:
        import numpy as np

        feed = normalize_feed(inputs, self.inputs)
        try:
            values = self._call(feed, quiet=True)()
        except Exception as err:
            text = first_line(err)
            raise BadInputError(f"ONNX Runtime failed to run the model: {text}") from err
        if self.needs_ort_values:
            values = values[1]
        return {n: np.asarray(v) for n, v in zip(self.output_names, values)}

    def bind(self, feed: dict):
        """ONNX Runtime's own call on buffers made once (bf16: OrtValues made once), nothing else: what
        bench times."""
        prepared = normalize_feed({m.name: feed[m.name] for m in self.inputs}, self.inputs)
        return self._call(prepared, quiet=False)

    def _call(self, feed: dict, quiet: bool):
        import onnxruntime as ort

        names, session = self.output_names, self._session
        options = None
        if quiet:  # a failure is raised as one line; ORT's own log would repeat it on stderr
            options = ort.RunOptions()
            options.log_severity_level = 4
        if self.needs_ort_values:
            values = ort_values(feed)
            # feed: keeps the numpy memory the OrtValues share alive for as long as the call exists
            return lambda: (feed, _ort_values_to_numpy(session.run_with_ort_values(names, values, options)))
        return lambda: session.run(names, feed, options)

    def info(self) -> dict:
        options = self._session.get_session_options()
        return {"threads": options.intra_op_num_threads, "inter_op_threads": options.inter_op_num_threads,
                "graph_optimization_level": str(options.graph_optimization_level).split(".")[-1],
                "disabled_optimizers": list(self.disabled_optimizers)}

    def release(self) -> None:
        self._session = None


def _ort_values_to_numpy(results) -> list:
    """Outputs of a run with bf16 tensors, which ORT's numpy bridge refuses both ways ("Numpy_type 256
    can't be converted", "No corresponding Numpy type"): bf16 goes in as its 16-bit pattern tagged
    BFLOAT16 (``ort_values``) and comes out copied from the output's CPU buffer (ml_dtypes' bfloat16
    has the same layout)."""
    import ctypes

    import ml_dtypes
    import numpy as np

    out = []
    for value in results:
        if value.data_type() != "tensor(bfloat16)":
            out.append(value.numpy())
            continue
        shape = tuple(value.shape())
        count = int(np.prod(shape, dtype=np.int64))
        buffer = (ctypes.c_uint16 * count).from_address(value.data_ptr()) if count else []
        out.append(np.array(buffer, dtype=np.uint16).reshape(shape).view(ml_dtypes.bfloat16))
    return out


def ort_values(feed: dict) -> dict:
    """name -> OrtValue; bf16 arrays (ml_dtypes) as their bit pattern tagged BFLOAT16. The numpy
    arrays kept here must outlive the OrtValues, which share their memory."""
    import ml_dtypes
    import numpy as np
    import onnxruntime as ort

    values = {}
    for name, array in feed.items():
        array = np.ascontiguousarray(array)
        if array.dtype == ml_dtypes.bfloat16:
            values[name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(array.view(np.uint16),
                                                                           onnx_element_type=16)  # BFLOAT16
        else:
            values[name] = ort.OrtValue.ortvalue_from_numpy(array)
    return values


def _dim(dim):
    """A size, a name, or None; a negative size is a dynamic dim as some exporters write it (-1), and
    ORT runs any size there."""
    if isinstance(dim, int):
        return dim if dim >= 0 else None
    return dim or None


def _meta(arg, shapeless: bool = False) -> TensorMeta:
    import numpy as np

    dtype = _ORT_TYPES.get(arg.type)
    if arg.type == "tensor(bfloat16)":
        import ml_dtypes

        dtype = ml_dtypes.bfloat16
    shape = None if shapeless else tuple(_dim(d) for d in (arg.shape or ()))
    # ORT spells types "tensor(float)", "seq(tensor(float))", "map(int64,tensor(float))", "optional(...)"
    kind = {"tensor": "tensor", "seq": "sequence"}.get(arg.type.split("(")[0], arg.type.split("(")[0])
    return TensorMeta(arg.name, np.dtype(dtype) if dtype else None, shape, kind)
