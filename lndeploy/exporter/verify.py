"""Every export is verified before it is written.

1. ``onnx.checker`` with full shape inference (the plugin op's schema registered first);
2. each declared dynamic dim is still symbolic in the graph's inputs (a fixed size means the trace
   specialised it);
3. ONNX Runtime runs the model (a bf16 plan: ONNX's reference evaluator, as ONNX Runtime's CPU provider
   has no bf16 MatMul/Gemm/Add kernels) at the example's sizes and at a second size of every dynamic dim, and
   its outputs are compared with PyTorch's. This is what catches a Python loop over a sequence: its
   unrolled export raises at a shorter length and silently cuts the output at a longer one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lndeploy import inputs as gen
from lndeploy import plugin_spec
from lndeploy.errors import BadInputError, ParityError
from lndeploy.exporter.dims import check_output_dims
from lndeploy.modelfile import ModelSpec

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 1e-2}


@dataclass
class VerifiedRun:
    sizes: dict
    max_abs: dict  # output name -> max abs error against PyTorch


def check_graph(model) -> None:
    import onnx

    if plugin_spec.plugin_nodes(model):
        plugin_spec.register_schema()
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ParityError(f"the exported model fails onnx.checker: {first}") from err


def check_dynamic_dims(model, spec: ModelSpec) -> None:
    graph_inputs = {i.name: i for i in model.graph.input}
    for name, axes in spec.dynamic_axes.items():
        if name not in graph_inputs:
            continue  # an input the model does not use is dropped by the exporter
        dims = graph_inputs[name].type.tensor_type.shape.dim
        for index, label in axes.items():
            if index < len(dims) and dims[index].HasField("dim_value"):
                raise BadInputError(
                    f"dynamic dim {label!r} (input {name!r}, dim {index}) was specialised to "
                    f"{dims[index].dim_value} by the trace: the model's code fixes that size"
                )


def second_sizes(spec: ModelSpec) -> dict[str, int]:
    """Another size for every dynamic dim: 2n+1 of its example size n (longer, and odd)."""
    sizes = {}
    for name, axes in spec.dynamic_axes.items():
        for index, label in axes.items():
            sizes.setdefault(label, 2 * int(spec.inputs[name].shape[index]) + 1)
    return sizes


def run_both(model, spec: ModelSpec, sizes: dict | None, seed: int = 1234, precision: str = "fp32") -> VerifiedRun:
    """ONNX Runtime vs PyTorch on one generated input set (the example sizes when ``sizes`` is None)."""
    import torch

    specs = gen.specs_from_examples(spec.inputs, spec.dynamic_axes)
    if sizes is None:
        feed = {n: t.detach().cpu().numpy() for n, t in spec.inputs.items()}
        sizes = {}
    else:
        feed = gen.generate(specs, sizes, seed)
    session = _session(model, precision)
    used = {m.name for m in session.inputs}
    try:
        got = session.run({k: v for k, v in feed.items() if k in used})
    except BadInputError as err:
        raise ParityError(f"the exported model fails at sizes {sizes}: {err}") from err
    with torch.inference_mode():
        expected = flatten_outputs(spec.call({k: torch.from_numpy(v) for k, v in feed.items()}))
    errors = {}
    for (name, value), ref in zip(got.items(), expected):
        if value.shape != ref.shape:
            raise ParityError(
                f"the exported model's output {name!r} has shape {value.shape} at sizes {sizes}, "
                f"PyTorch gives {ref.shape}: a dynamic dim was fixed by the trace (e.g. a Python loop)"
            )
        errors[name] = _max_abs(value, ref)
    return VerifiedRun(sizes, errors)


def _max_abs(value: np.ndarray, ref: np.ndarray) -> float:
    """Max abs error, where NaN or inf that PyTorch itself gives and the export repeats is no error (a
    model that pads a whole row gives NaN in PyTorch too); NaN or inf on one side only is NaN."""
    value, ref = value.astype(np.float64), np.asarray(ref, dtype=np.float64)
    if not value.size:
        return 0.0
    bad_v, bad_r = ~np.isfinite(value), ~np.isfinite(ref)
    same = bad_v & bad_r & ((value == ref) | (np.isnan(value) & np.isnan(ref)))
    if ((bad_v | bad_r) & ~same).any():
        return float("nan")
    return float(np.max(np.abs(np.where(same, 0.0, value - ref))))


def _session(model, precision: str):
    if precision == "bf16":  # ORT CPU: NOT_IMPLEMENTED for bf16 MatMul, Gemm, Add, ... (1.31)
        from lndeploy.backends.reference import ReferenceSession

        return ReferenceSession(model)
    from lndeploy.backends.onnxruntime import OrtSession

    return OrtSession(model, providers=["CPUExecutionProvider"])


def flatten_outputs(result) -> list[np.ndarray]:
    """PyTorch's outputs in the exporter's order (``None`` left out), as float64 arrays."""
    from lndeploy.exporter.outputs import output_arrays

    return output_arrays(result)


def verify(model, spec: ModelSpec, precision: str = "fp32") -> list[VerifiedRun]:
    check_graph(model)
    check_dynamic_dims(model, spec)
    check_output_dims(model, spec, second_sizes(spec))  # output dims that follow dynamic ones are symbolic
    runs = [run_both(model, spec, None, precision=precision)]
    if spec.dynamic_axes:
        runs.append(run_both(model, spec, second_sizes(spec), precision=precision))
    tol = TOLERANCE[precision]
    for run in runs:
        for name, err in run.max_abs.items():
            if not err <= tol:  # also catches NaN
                what = f"max abs error {err:.3g} > {tol:g}" if err == err else "has NaN/inf where PyTorch differs"
                raise ParityError(f"export verification failed: output {name!r} {what} "
                                  f"against PyTorch at sizes {run.sizes or 'of the example'}")
    return runs
