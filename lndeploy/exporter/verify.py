"""Every export is verified before it is written.

1. ``onnx.checker`` with full shape inference (the plugin op's schema registered first);
2. each declared dynamic dim is still symbolic in the graph's inputs (a fixed size means the trace
   specialised it);
3. a runtime runs the model at the example's sizes and at a second size of every dynamic dim, and its
   outputs are compared with PyTorch's through ``lndeploy.parity`` (the tolerance of the precision, or
   the caller's ``atol``/``rtol``). This is what catches a Python loop over a sequence: its unrolled
   export raises at a shorter length and silently cuts the output at a longer one.

The runtime is passed in (``open_runner(model, precision) -> Runner``): the exporter sits below the
backends and imports none of them; ``lndeploy.pipeline`` supplies ONNX Runtime on the CPU (a bf16 plan:
ONNX's reference evaluator, as ONNX Runtime's CPU provider has no bf16 MatMul/Gemm/Add kernels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lndeploy import inputs as gen
from lndeploy import parity, plugin_spec
from lndeploy.errors import BadInputError, ParityError, first_line
from lndeploy.exporter.dims import check_output_dims
from lndeploy.modelfile import ModelSpec


@dataclass
class VerifiedRun:
    sizes: dict
    max_abs: dict  # output name -> max abs error against PyTorch
    outputs: dict = field(default_factory=dict)  # output name -> lndeploy.parity statistics (dict)


def check_graph(model) -> None:
    import onnx

    if plugin_spec.plugin_nodes(model):
        plugin_spec.register_schema()
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:
        first = first_line(err)
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


def run_both(model, spec: ModelSpec, sizes: dict | None, open_runner, seed: int = 1234, precision: str = "fp32",
             tol: parity.Tolerance | None = None) -> VerifiedRun:
    """The runtime vs PyTorch on one input set (the example itself when ``sizes`` is None)."""
    import torch

    tol = tol or parity.tolerance(precision)
    if sizes is None:
        feed, sizes = {n: t.detach().cpu().numpy() for n, t in spec.inputs.items()}, {}
    else:
        feed = gen.generate(gen.specs_from_examples(spec.inputs, spec.dynamic_axes), sizes, seed)
    with open_runner(model, precision) as runner:
        used = set(runner.input_names)
        try:
            got = runner.run({k: v for k, v in feed.items() if k in used})
        except BadInputError as err:
            raise ParityError(f"the exported model fails at sizes {sizes}: {err}") from err
        names = runner.output_names
    with torch.inference_mode():
        expected = flatten_outputs(spec.call({k: torch.from_numpy(v) for k, v in feed.items()}))
    if len(expected) != len(names):
        raise ParityError(f"the exported model has {len(names)} outputs, PyTorch returns {len(expected)}")
    stats = parity.compare_outputs(got, dict(zip(names, expected)), tol, names)
    for name, entry in stats.items():
        if entry.error and "shape" in entry.error:
            raise ParityError(
                f"the exported model's output {name!r} has shape {list(got[name].shape)} at sizes {sizes}, "
                f"PyTorch gives {list(np.shape(expected[names.index(name)]))}: a dynamic dim was fixed by the "
                "trace (e.g. a Python loop)")
    return VerifiedRun(sizes, {n: s.max_abs for n, s in stats.items()}, {n: s.to_dict() for n, s in stats.items()})


def flatten_outputs(result) -> list[np.ndarray]:
    """PyTorch's outputs in the exporter's order (``None`` left out), as float64 arrays."""
    from lndeploy.exporter.outputs import output_arrays

    return output_arrays(result)


def verify(model, spec: ModelSpec, precision: str = "fp32", *, open_runner,
           tol: parity.Tolerance | None = None) -> list[VerifiedRun]:
    """Checker, dynamic dims, then the runtime against PyTorch at the example's sizes and at a second size;
    ``tol`` (default: the precision's row of ``lndeploy.parity``'s table) gates every element."""
    tol = tol or parity.tolerance(precision)
    check_graph(model)
    check_dynamic_dims(model, spec)
    check_output_dims(model, spec, second_sizes(spec))  # output dims that follow dynamic ones are symbolic
    runs = [run_both(model, spec, None, open_runner, precision=precision, tol=tol)]
    if spec.dynamic_axes:
        runs.append(run_both(model, spec, second_sizes(spec), open_runner, precision=precision, tol=tol))
    for run in runs:
        for name, stats in run.outputs.items():
            if stats["error"] is None and stats["over_tolerance"] == 0:
                continue
            where = f"at sizes {run.sizes or 'of the example'}"
            if stats["error"]:
                raise ParityError(f"export verification failed: output {name!r} {stats['error']} against PyTorch "
                                  f"{where}")
            raise ParityError(f"export verification failed: output {name!r} max abs error {stats['max_abs']:.3g} "
                              f"> {tol} against PyTorch {where}{parity.rtol_hint(stats, tol.rtol)}")
    return runs
