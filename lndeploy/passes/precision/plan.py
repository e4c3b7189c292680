"""Reduced-precision planning: fp16 / bf16 in the graph's own types, LayerNorm and sums in fp32.

Strongly typed TensorRT (10.x with the flag, 11.x and TensorRT-RTX always) runs each layer in the
types the ONNX graph gives it; no builder flag asks for fp16 any more. So the plan is the graph's types:

* float tensors become fp16 (or bf16): matmuls, convolutions, activations, products, weights;
* graph inputs and outputs stay fp32 (Casts at the edges), so parity is checked against PyTorch's fp32;
* every LN (``LayerNormalization``, also in Scan bodies, and plugin nodes) is an fp32 island::

      Y16 = Cast<fp16>(LN(Cast<fp32>(X16), Scale32, B32))

  The island, not ``stash_type``: TensorRT-RTX's parser keeps the island's types (its normalization
  layer reads and writes fp32), while an fp16 LN with ``stash_type=1`` becomes an fp16 layer with no
  compute-precision setting; ONNX's reference evaluator ignores ``stash_type`` on fp16 input too.
  With ``d = x - mean``, ``d*d`` overflows fp16 once ``|d| > 256``;
* sums stay fp32 too (``Add``, ``Sum``, reductions, average pools, ``Softmax``): a residual stream
  rounded to bf16's 8 bits after every block loses the small updates (transformer zoo model, bf16:
  2.1e-2 max abs with bf16 sums, 5e-3 with fp32 sums; PyTorch's autocast keeps them fp32 too). The
  Casts around them are pointwise and fuse into the neighbouring kernels in TensorRT.

The conversion is onnxconverter-common's ``convert_float_to_float16`` with these ops on its block
list. Version 1.16 gets eight things wrong for our graphs, each patched around here, minimally:

1. it rewires a blocked node's inputs to Casts *before* deciding which initializers stay fp32, so an
   initializer with a ``value_info`` entry (the dynamo exporter writes them) is rounded to fp16 and
   cast back: value_info entries that repeat an initializer are dropped first;
2. it decides per graph: a Scan body's LN whose Scale/B are outer-scope initializers gets them in fp16
   with no Cast; an initializer shared with a converted node is converted too: such blocked nodes
   get a private fp32 copy in their own graph;
3. it finds types in ``value_info`` and graph inputs only: a blocked node reading a value typed only as
   a graph output (an RNN's state in a Scan body) gets no Cast to fp32, and the plugin's output (no
   type inference) no Cast back: both are declared in ``value_info``;
4. ``ConstantOfShape`` without ``value`` (an implicit fp32 zero) and the model's own ``Cast(to=FLOAT)``
   keep producing fp32: the first gets an explicit value, the second is retargeted afterwards;
5. with ``keep_io_types``, a blocked node writing a graph output leaves it fp16: its Cast back
   becomes a Cast to fp32;
6. it removes fp32 -> fp16 -> fp32 Cast round trips between blocked nodes only in simple chains: the
   rest are folded here (the fp32 value is read directly: one rounding less);
7. that removal raises AttributeError where the second Cast feeds several nodes: it is switched off
   for the call, as item 6 folds every round trip anyway;
8. a graph output that nodes also read is cast to fp32 for the output and its readers are left on
   the fp32 name: such outputs get an fp32 ``Identity`` of their own first.

bf16: onnxconverter-common has none. The fp16 plan is retyped (initializers, constants, Casts,
value_info), weights from the original fp32 values (no double rounding, no fp16 range clamp). ONNX
types some ops in bf16 only from a later opset (``Conv`` 22, ``ConstantOfShape`` 20): a bf16 plan
raises the model's opset to the first that types every op that computes in bf16.
"""

from __future__ import annotations

import itertools

from lndeploy import plugin_spec
from lndeploy.errors import BadInputError, first_line
from lndeploy.passes.precision.bf16 import raise_opset_for_bf16, retype_bf16
from lndeploy.passes.precision.dtypes import (
    BFLOAT16, FLOAT, FLOAT16, FP16_MAX, FP16_MIN_POSITIVE, attr, block_list, elem, is_ln, kept_fp32, set_attr,
    tensor_types,
)
from lndeploy.passes.precision.fp32_nodes import decouple_read_outputs, index_arithmetic_nodes, names_of_unnamed

PRECISIONS = ("fp16", "bf16")


def plan_precision(model, precision: str):
    """Return a copy of ``model`` (an fp32 ``onnx.ModelProto``) planned for ``precision``."""
    import onnx

    if precision not in PRECISIONS:
        raise BadInputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not isinstance(model, onnx.ModelProto):
        raise BadInputError(f"expected an onnx.ModelProto, got {type(model).__name__}")
    _refuse_reduced(model)
    if plugin_spec.plugin_nodes(model):
        plugin_spec.register_schema()
    source, index_nodes = prepare(model, precision)
    planned = _convert(source, index_nodes)
    _retarget_float_casts(planned.graph, _float_cast_names(source) - index_nodes)
    _keep_fp32_outputs(planned.graph, {o.name for o in model.graph.output if elem(o) == FLOAT})
    fold_cast_round_trips(planned)
    _drop_unused_initializers(planned.graph)
    if precision == "bf16":
        retype_bf16(planned, source)
    check_plan(planned, precision)
    return planned


def _refuse_reduced(model) -> None:
    for graph in plugin_spec.iter_graphs(model.graph):
        for tensor in itertools.chain(graph.initializer, graph.input, graph.output, graph.value_info):
            dtype = tensor.data_type if hasattr(tensor, "data_type") else elem(tensor)
            if dtype in (FLOAT16, BFLOAT16):
                raise BadInputError(
                    f"the model already holds reduced-precision tensors ({tensor.name!r}): "
                    "plan precision on the fp32 export"
                )


# --- before the converter ---------------------------------------------------------------------


def prepare(model, precision: str = "fp16"):
    """A copy of ``model`` with the converter's blind spots removed (items 1-4 of the module doc),
    and the names of the nodes that stay fp32 beyond the block list (``fp32_nodes``)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    if precision == "bf16":
        out = raise_opset_for_bf16(out)
    names = _NameSource(out)
    names_of_unnamed(out, names.fresh)
    index_nodes = index_arithmetic_nodes(out, tensor_types(onnx.shape_inference.infer_shapes(out)))
    index_nodes |= decouple_read_outputs(out.graph, names.fresh)

    def kept(node) -> bool:
        return kept_fp32(node) or node.name in index_nodes

    converted_reads = {i for g in plugin_spec.iter_graphs(out.graph) for n in g.node if not kept(n)
                       for i in n.input}
    _prepare_graph(out.graph, {}, converted_reads, names, kept)
    return out, index_nodes


def _prepare_graph(graph, outer_inits: dict, converted_reads: set, names, kept) -> None:
    import onnx

    inits = {**outer_inits, **{t.name: t for t in graph.initializer}}
    local = {t.name for t in graph.initializer}
    # 1. value_info that repeats an initializer: the initializer already says its type
    keep = [v for v in graph.value_info if v.name not in local]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    typed = {v.name: v for v in itertools.chain(graph.input, graph.value_info, graph.output)}
    copies = {}
    for node in graph.node:
        if not node.name:
            node.name = names.fresh(f"{node.op_type}_node")
        if node.op_type == "ConstantOfShape" and not node.attribute:
            node.attribute.append(_fp32_zero_value())
        if kept(node):
            _private_initializers(graph, node, inits, local, converted_reads, copies, names)
            _declare_values(graph, node, typed)
        for attribute in node.attribute:
            subgraphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
            for sub in subgraphs:
                _prepare_graph(sub, inits, converted_reads, names, kept)


def _private_initializers(graph, node, inits, local, converted_reads, copies, names) -> None:
    """2. An initializer from an outer graph, or one a converted node reads too, is copied here."""
    for index, name in enumerate(node.input):
        if not name or name not in inits or (name in local and name not in converted_reads):
            continue
        if name not in copies:
            tensor = graph.initializer.add()
            tensor.CopyFrom(inits[name])
            tensor.name = copies[name] = names.fresh(f"{name}_fp32")
        node.input[index] = copies[name]


def _declare_values(graph, node, typed: dict) -> None:
    """3. Inputs typed only as graph outputs, and an LN's Y (fp32, X's shape), go into value_info."""
    import onnx

    declared = {v.name for v in itertools.chain(graph.value_info, graph.input)}
    for name in node.input:
        if name and name not in declared and name in typed:
            graph.value_info.append(typed[name])
            declared.add(name)
    y = node.output[0]
    if not is_ln(node) or y in typed:
        return
    info = onnx.ValueInfoProto()
    if node.input[0] in typed:
        info.CopyFrom(typed[node.input[0]])
    info.name = y
    info.type.tensor_type.elem_type = FLOAT
    graph.value_info.append(info)
    typed[y] = info


def _fp32_zero_value():
    import numpy as np
    from onnx import helper, numpy_helper

    return helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float32)))


def _float_cast_names(model) -> set:
    return {n.name for g in plugin_spec.iter_graphs(model.graph) for n in g.node
            if n.op_type == "Cast" and attr(n, "to") == FLOAT}


# --- the converter and after ------------------------------------------------------------------


def _convert(model, fp32_nodes: set = frozenset()):
    import warnings

    from onnxconverter_common import float16

    block = sorted(block_list())
    # 7. its own Cast round-trip removal raises AttributeError where the second Cast feeds several nodes
    # (an LN output that is a graph output and read by two blocked ops): skipped, item 6 folds them all
    own_removal = float16.remove_unnecessary_cast_node
    float16.remove_unnecessary_cast_node = lambda graph: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it warns per clamped weight; the clamp is at fp16's own range
            return float16.convert_float_to_float16(
                model, min_positive_val=FP16_MIN_POSITIVE, max_finite_val=FP16_MAX, keep_io_types=True,
                op_block_list=block, node_block_list=sorted(fp32_nodes), check_fp16_ready=False,
            )
    finally:
        float16.remove_unnecessary_cast_node = own_removal


def _retarget_float_casts(graph, names: set) -> None:
    """4. The model's own ``Cast(to=FLOAT)`` nodes now feed fp16 ops: they cast to fp16 instead."""
    for sub in plugin_spec.iter_graphs(graph):
        for node in sub.node:
            if node.name in names and node.op_type == "Cast":
                set_attr(node, "to", FLOAT16)


def _keep_fp32_outputs(graph, fp32_outputs: set) -> None:
    """5. A graph output the converter left in fp16 (an LN's Cast back) is cast to fp32 instead."""
    producers = {o: n for n in graph.node for o in n.output}
    for output in graph.output:
        if output.name not in fp32_outputs or elem(output) == FLOAT:
            continue
        node = producers.get(output.name)
        if node is None or node.op_type != "Cast":
            raise BadInputError(f"fp16 planning left graph output {output.name!r} in reduced precision")
        set_attr(node, "to", FLOAT)
        output.type.tensor_type.elem_type = FLOAT


def fold_cast_round_trips(model) -> None:
    """6. ``Cast<fp32>(Cast<fp16>(v))`` with ``v`` fp32 reads ``v`` itself (one rounding less)."""
    import onnx

    types = tensor_types(onnx.shape_inference.infer_shapes(model))
    for graph in plugin_spec.iter_graphs(model.graph):
        producers = {o: n for n in graph.node for o in n.output}
        outputs = {o.name for o in graph.output}
        rename = {}
        for node in graph.node:
            if node.op_type != "Cast" or attr(node, "to") != FLOAT or node.output[0] in outputs:
                continue
            source = producers.get(node.input[0])
            if source is not None and source.op_type == "Cast" and types.get(source.input[0]) == FLOAT:
                rename[node.output[0]] = source.input[0]
        for sub in plugin_spec.iter_graphs(graph):
            for node in sub.node:
                node.input[:] = [rename.get(i, i) for i in node.input]
        _drop_dead_casts(graph)


def _drop_dead_casts(graph) -> None:
    outputs = {o.name for o in graph.output}
    while True:
        read = {i for g in plugin_spec.iter_graphs(graph) for n in g.node for i in n.input}
        dead = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in read | outputs]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def _drop_unused_initializers(graph) -> None:
    """An outer initializer whose only readers got private copies (item 2) is dead weight."""
    read = {i for g in plugin_spec.iter_graphs(graph) for n in g.node for i in n.input}
    read |= {o.name for g in plugin_spec.iter_graphs(graph) for o in g.output}
    for sub in plugin_spec.iter_graphs(graph):
        kept = [t for t in sub.initializer if t.name in read]
        if len(kept) != len(sub.initializer):
            del sub.initializer[:]
            sub.initializer.extend(kept)


# --- the plan's own check ---------------------------------------------------------------------


def check_plan(planned, precision: str) -> None:
    """Types are consistent, and every LN node reads fp32 X, Scale and B (its island holds)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(planned, check_type=True, strict_mode=True)
    except Exception as err:
        raise BadInputError(f"{precision} planning produced an inconsistent graph: {first_line(err)}") from err
    types = tensor_types(inferred)
    for graph in plugin_spec.iter_graphs(inferred.graph):
        for node in graph.node:
            if is_ln(node):
                wrong = [i for i in node.input if i and types.get(i) != FLOAT]
                if wrong:
                    raise BadInputError(f"{precision} planning left LN {node.name!r} reading {wrong[0]!r} "
                                        f"as {types.get(wrong[0])}, not fp32")


class _NameSource:
    """Fresh names that collide with nothing in the model (values or nodes, any graph)."""

    def __init__(self, model):
        self.taken = set()
        for g in plugin_spec.iter_graphs(model.graph):
            self.taken |= {t.name for t in itertools.chain(g.initializer, g.node, g.input, g.output, g.value_info)}
            self.taken |= {x for n in g.node for x in itertools.chain(n.input, n.output)}

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name
