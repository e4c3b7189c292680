"""Output dims that follow a dynamic input dim are symbolic in the written graph.

torch's dynamo exporter can type an output dim with the example's size although the graph computes it
from a dynamic input. Measured (torch 2.13): a tagger on ``nn.GRU(bidirectional=True)`` is refused by
strict ``torch.export`` ("marked seq as dynamic but your code specialized it"), the ONNX exporter's
fallback exports it anyway, and the file declares its output ``['batch', 10, 7]``. The graph itself
computes every length right, so ONNX Runtime matches PyTorch at other lengths, but it warns on every
such call ("Expected shape from model of {-1,10,7} does not match actual shape of {3,33,7}"), and
whoever reads the declared shape (a TensorRT profile, a Triton config) takes the length as fixed.

Which output dims follow the inputs' dynamic dims is measured: PyTorch runs at the example's sizes and
at the second sizes that verification uses (README 'How export is verified'); an output dim whose size
changes between the two follows a dynamic dim. Only outputs with a fixed dim that ONNX shape inference
(from the inputs alone) does not confirm are measured, so most exports cost no extra PyTorch run. :func:`name_output_dims` makes each such dim symbolic (named like
the input dim whose size it has at both sizes, else ``<output>_dim<i>``) and has the values leading to it
typed again by ONNX shape inference; :func:`check_output_dims` is the verification step that fails an
export where one is still a fixed number.
"""

from __future__ import annotations

from lndeploy.errors import BadInputError, ParityError, first_line
from lndeploy.modelfile import ModelSpec


def following_dims(model, spec: ModelSpec, sizes: dict[str, int]) -> dict[str, dict[int, tuple[str | None, int]]]:
    """Graph output name -> {dim index: (name of the input dim it equals or None, its example size)} for
    every output dim whose PyTorch size differs between the example's sizes and ``sizes`` (label -> size)."""
    suspects = _unconfirmed_fixed_outputs(model)
    if not suspects:
        return {}
    try:
        before = _pytorch_shapes(spec, None)
    except Exception as err:  # the example ran before (export): the model's own fault, one line (exit 2)
        raise BadInputError(f"{spec.source}: forward() raised {type(err).__name__} on the example inputs: "
                            f"{first_line(err)}") from err
    try:
        after = _pytorch_shapes(spec, sizes)
    except Exception:  # the model refuses these sizes: verification runs PyTorch there too and says so
        return {}
    names = _input_dim_names(model, spec, sizes)
    found = {}
    for output, shape, other in zip(model.graph.output, before, after):
        if output.name not in suspects or len(shape) != len(other):
            continue  # a rank that changes with the sizes: verification's shape check reports it
        moving = {i: (_matching_name(names, a, b), a) for i, (a, b) in enumerate(zip(shape, other)) if a != b}
        if moving:
            found[output.name] = moving
    return found


def name_output_dims(model, spec: ModelSpec, sizes: dict[str, int]) -> list[str]:
    """Make every fixed output dim that follows a dynamic input dim symbolic, in place; one note per dim.

    Only a dim fixed at the example's own size is renamed: any other fixed size is a wrong graph, which
    verification reports."""
    if not spec.dynamic_axes:
        return []
    follows = following_dims(model, spec, sizes)
    notes = []
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        for index, (name, example_size) in follows.get(output.name, {}).items():
            dim = dims[index] if index < len(dims) else None
            if dim is None or not dim.HasField("dim_value") or dim.dim_value != example_size:
                continue
            fixed = dim.dim_value
            dim.dim_param = name or f"{output.name}_dim{index}"  # clears dim_value (a oneof)
            notes.append(f"output {output.name!r} dim {index} was written as {fixed} by the exporter although "
                         f"it follows the dynamic dims; made symbolic ({dim.dim_param!r})")
    if notes:
        _reinfer_value_info(model)
    return notes


def _reinfer_value_info(model) -> None:
    """The exporter's value_info carries the same fixed size on the values that lead to such an output
    (ONNX Runtime warns from those too): the main graph's value_info is derived again by ONNX shape
    inference, whose data propagation follows Shape -> Gather -> Concat -> Reshape symbolically."""
    import onnx

    del model.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    model.graph.value_info.extend(inferred.graph.value_info)


def check_output_dims(model, spec: ModelSpec, sizes: dict[str, int]) -> None:
    """Export verification: no output dim that follows a dynamic input dim is a fixed number."""
    if not spec.dynamic_axes:
        return
    follows = following_dims(model, spec, sizes)
    for output in model.graph.output:
        dims = output.type.tensor_type.shape.dim
        for index in follows.get(output.name, {}):
            if index < len(dims) and dims[index].HasField("dim_value"):
                raise ParityError(
                    f"export verification failed: output {output.name!r} dim {index} is fixed to "
                    f"{dims[index].dim_value} in the graph, but its size follows the dynamic dims "
                    f"(PyTorch at sizes {sizes} gives another size): ONNX Runtime would warn at every "
                    f"other size and TensorRT or Triton would read the dim as fixed"
                )


def _unconfirmed_fixed_outputs(model) -> set[str]:
    """Outputs with a fixed dim that ONNX shape inference, from the graph's inputs alone (the exporter's
    value_info and output shapes set aside), does not find at that same size. Only these are measured:
    a model whose output dims inference confirms costs no PyTorch run (the zoo models, for instance)."""
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    for output in probe.graph.output:
        output.type.tensor_type.ClearField("shape")
    try:
        inferred = {o.name: o.type.tensor_type.shape.dim
                    for o in onnx.shape_inference.infer_shapes(probe, data_prop=True).graph.output}
    except Exception:  # inference gives up on the graph: every fixed dim is unconfirmed
        inferred = {}
    suspects = set()
    for output in model.graph.output:
        found = inferred.get(output.name, [])
        for index, dim in enumerate(output.type.tensor_type.shape.dim):
            confirmed = index < len(found) and found[index].HasField("dim_value") \
                and found[index].dim_value == dim.dim_value
            if dim.HasField("dim_value") and not confirmed:
                suspects.add(output.name)
    return suspects


def _pytorch_shapes(spec: ModelSpec, sizes: dict[str, int] | None) -> list[tuple[int, ...]]:
    """Shapes of PyTorch's outputs, in the exporter's order, at the example's inputs (``sizes`` None)
    or on inputs generated at ``sizes``."""
    import torch

    from lndeploy import inputs as gen
    from lndeploy.exporter.outputs import output_leaves

    if sizes is None:
        feed = dict(spec.inputs)
    else:
        specs = gen.specs_from_examples(spec.inputs, spec.dynamic_axes)
        feed = {name: torch.from_numpy(value) for name, value in gen.generate(specs, sizes, seed=0).items()}
    with torch.inference_mode():
        return [tuple(tensor.shape) for _, tensor in output_leaves(spec.call(feed))]


def _input_dim_names(model, spec: ModelSpec, sizes: dict[str, int]) -> list[tuple[str, int, int]]:
    """(name in the graph, example size, size in ``sizes``) of every dynamic input dim."""
    graph_inputs = {i.name: i.type.tensor_type.shape.dim for i in model.graph.input}
    names = []
    for input_name, axes in spec.dynamic_axes.items():
        dims = graph_inputs.get(input_name)
        for index, label in axes.items():
            if dims is None or index >= len(dims) or not dims[index].dim_param or label not in sizes:
                continue
            names.append((dims[index].dim_param, int(spec.inputs[input_name].shape[index]), sizes[label]))
    return names


def _matching_name(names: list[tuple[str, int, int]], before: int, after: int) -> str | None:
    """The one input dim name with sizes (``before``, ``after``); None when none or several differ."""
    matches = {name for name, example, other in names if (example, other) == (before, after)}
    return matches.pop() if len(matches) == 1 else None
