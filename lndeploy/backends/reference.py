"""ONNX's reference evaluator as a backend: slow, but it computes in the types the graph declares.

Why it is here: ONNX Runtime's CPU provider runs fp16 MatMul/Gemm regions in fp32 (it inserts its own
Casts), so an fp16 overflow that TensorRT would hit stays hidden on the CPU. The reference evaluator
(numpy underneath) does fp16 arithmetic in fp16 and bf16 in bf16 (ml_dtypes): ``(x - mean)**2``
overflows to inf where it would on an fp16 GPU kernel. It also computes ``LayerNormalization`` in its
input type whatever ``stash_type`` says, like a runtime that does not honour ``stash_type``. So it is
the CPU witness that an fp16 plan keeps its LN statistics in fp32 by its types alone.

MatMul/Gemm/Conv come out as the exact result rounded once to the output type (as on a GPU, which
accumulates in fp32). Sums over many elements are where it differs from GPU kernels: fp16 reductions
accumulate in fp32 (numpy's rule), but bf16 ones (ReduceSum/Mean, AveragePool, Softmax's sum) accumulate
in bf16 (ml_dtypes), so a graph that reduces in bf16 looks worse here than on TensorRT. lndeploy's
plans keep sums in fp32 (:mod:`lndeploy.passes.precision`).

Nothing is upcast here: inputs are converted to the graph's declared input types (as every backend
does) and outputs are returned in the types the graph produces. Plugin nodes run through the same
model-local reference function as on ONNX Runtime (:func:`lndeploy.plugin_spec.with_reference_functions`),
or with ``plugin_impl="kernel"`` through lndeploy's Triton kernel (:mod:`lndeploy.backends.plugin_kernel`);
``Scan`` bodies are evaluated step by step.

One operator of onnx 1.23's evaluator is replaced: its ``GatherElements`` goes through ``np.choose``,
which takes at most 64 choices, and its fallback reshapes wrongly (``cannot reshape array of size 1``
on BERT's position ids, 512 long). ``np.take_along_axis`` is the operator's definition.
"""

from __future__ import annotations

import os

from lndeploy import plugin_spec
from lndeploy.backends import TensorMeta, normalize_feed
from lndeploy.backends.base import Runner
from lndeploy.errors import BadInputError, first_line


class ReferenceSession(Runner):
    """``run(inputs) -> {name: array}`` over ``onnx.reference.ReferenceEvaluator``."""

    backend = "onnx-reference"
    provider = "onnx.reference"

    def __init__(self, model_or_path, plugin_impl: str = "onnx"):
        from onnx.reference import ReferenceEvaluator

        model = _load(model_or_path)
        new_ops = [_gather_elements_op()]
        self.kernel_worker = None
        if plugin_impl == "kernel" and plugin_spec.plugin_nodes(model):
            from lndeploy.backends.plugin_kernel import KernelWorker, kernel_layer_norm_op

            plugin_spec.ensure_opset_import(model)
            self.kernel_worker = KernelWorker()
            new_ops.append(kernel_layer_norm_op(self.kernel_worker))
        elif plugin_spec.plugin_nodes(model):
            model = plugin_spec.with_reference_functions(model)
        try:
            self.evaluator = ReferenceEvaluator(model, new_ops=new_ops)
        except Exception as err:
            self.release()
            raise BadInputError(f"the ONNX reference evaluator cannot load the model: {first_line(err)}") from err
        from lndeploy.onnxfile import graph_inputs

        self.inputs = [_meta(v) for v in graph_inputs(model)]
        self.outputs = [_meta(v) for v in model.graph.output]

    def run_impl(self, inputs) -> dict:
        import numpy as np

        feed = normalize_feed(inputs, self.inputs)
        names = self.output_names
        try:
            values = self.evaluator.run(names, feed)
        except Exception as err:
            raise BadInputError(f"the ONNX reference evaluator failed to run the model: {first_line(err)}") from err
        # contiguous like ONNX Runtime's: Scan outputs come back as transposed views, which
        # Polygraphy's comparator cannot .view(); ascontiguousarray makes a 0-d array 1-d, so the
        # shape is put back (a scalar output, e.g. a loss, must stay shape ())
        return {name: np.ascontiguousarray(value).reshape(np.shape(value)) for name, value in zip(names, values)}

    def release(self) -> None:
        self.evaluator = None
        if self.kernel_worker is not None:
            self.kernel_worker.close()
            self.kernel_worker = None


def _gather_elements_op():
    """``GatherElements(data, indices, axis)[i][j]... = data[..][indices[i][j]..][..]`` (along ``axis``)."""
    import numpy as np
    from onnx.reference.op_run import OpRun

    class GatherElements(OpRun):
        op_domain = ""

        def _run(self, data, indices, axis=None):
            axis = 0 if axis is None else int(axis)
            indices = np.where(indices < 0, indices + data.shape[axis], indices)  # negative: from the end
            return (np.take_along_axis(data, indices.astype(np.int64), axis=axis),)

    return GatherElements


def _load(model_or_path):
    import onnx

    if isinstance(model_or_path, (str, os.PathLike)):
        from lndeploy.onnxfile import load_model

        return load_model(model_or_path)
    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    raise BadInputError(f"expected an ONNX model or a path, got {type(model_or_path).__name__}")


def _meta(value) -> TensorMeta:
    """Name, numpy dtype (ml_dtypes for bf16) and shape: ints for fixed dims, names or None otherwise."""
    import numpy as np
    from onnx import helper

    tensor = value.type.tensor_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)) if tensor.elem_type else None
    # no shape field: any rank (TensorMeta), not a scalar
    # a negative size is a dynamic dim as some exporters write it (-1)
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else (d.dim_param or None)
                  for d in tensor.shape.dim) if tensor.HasField("shape") else None
    from lndeploy.onnxfile import value_kind

    return TensorMeta(value.name, dtype, shape, value_kind(value))
