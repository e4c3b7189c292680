"""Nodes a reduced-precision plan keeps fp32 beyond its op-type block list.

Index arithmetic, and the ``Identity`` that gives a graph output read by other nodes its own producer.

Models compute integer quantities through floats: T5's relative-position buckets are
``(log(rel.float() / 8) / log(16) * 8).long()``, interpolation sizes are ``(shape * scale).floor()``,
padding masks are ``(1 - mask.float()) * finfo.min``. Done in fp16 (or bf16), the truncation to an
integer picks another bucket at the boundaries, i.e. another embedding row: a tiny T5 encoder's
fp16 plan missed PyTorch by 0.11 for that alone. These nodes are cheap (no weights, no activations),
so they are kept fp32.

A node is index arithmetic when every input is non-float (int, bool), a float value computed only
from such inputs, or a scalar constant, and it writes a float. Activations never qualify (they come
from float graph inputs or weights), so this never pulls the network itself into fp32.
"""

from __future__ import annotations

from lndeploy import plugin_spec
from lndeploy.passes.precision.dtypes import FLOAT, elem


def index_arithmetic_nodes(model, types: dict) -> set[str]:
    """Names of the nodes (any graph) that do float arithmetic on integer-derived values only.

    ``types``: name -> ONNX elem type of every typed tensor (after shape inference)."""
    names = set()
    for graph in plugin_spec.iter_graphs(model.graph):
        derived = set()  # float values computed from integers only
        scalars = {t.name for t in graph.initializer if _numel(t.dims) <= 1}
        for node in graph.node:
            if node.op_type == "Constant":
                if _constant_is_scalar(node):
                    scalars.add(node.output[0])
                continue
            inputs = [i for i in node.input if i]
            floats_out = [o for o in node.output if types.get(o) == FLOAT]
            if not inputs or not floats_out or node.domain not in ("", "ai.onnx"):
                continue
            from_ints = [i for i in inputs if i in derived or (types.get(i) not in (None, FLOAT)
                                                                and i not in scalars)]
            if from_ints and all(i in derived or i in scalars or types.get(i) not in (None, FLOAT)
                                 for i in inputs):
                names.add(node.name)
                derived.update(floats_out)
    return names


def _numel(dims) -> int:
    count = 1
    for d in dims:
        count *= d
    return count


def _constant_is_scalar(node) -> bool:
    import onnx

    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.TENSOR:
            return _numel(attr.t.dims) <= 1
        if attr.type in (onnx.AttributeProto.FLOAT, onnx.AttributeProto.INT):
            return True
    return False


def names_of_unnamed(model, fresh) -> None:
    """Give every node a name (the converter's node block list goes by name)."""
    for graph in plugin_spec.iter_graphs(model.graph):
        for node in graph.node:
            if not node.name:
                node.name = fresh(f"{node.op_type}_node")


def decouple_read_outputs(graph, fresh) -> set[str]:
    """Item 8 of ``plan``'s doc. A graph output that nodes also read (``return y, f(y)``): the
    converter casts it to fp32 for the output and leaves its readers on that fp32 name. Readers get the
    value under a name of its own; the output gets it through an fp32 ``Identity`` (whose Cast round
    trip item 6 folds). Returns the names of the Identity nodes, to be kept fp32."""
    import onnx

    read = {i for g in plugin_spec.iter_graphs(graph) for n in g.node for i in n.input}
    producers = {o: n for n in graph.node for o in n.output}
    added = set()
    for output in graph.output:
        if output.name not in read or output.name not in producers or elem(output) != FLOAT:
            continue
        inner = fresh(f"{output.name}_value")
        for sub in plugin_spec.iter_graphs(graph):
            for node in sub.node:
                node.input[:] = [inner if i == output.name else i for i in node.input]
        producer = producers[output.name]
        producer.output[:] = [inner if o == output.name else o for o in producer.output]
        for info in graph.value_info:
            if info.name == output.name:
                info.name = inner
        identity = onnx.helper.make_node("Identity", [inner], [output.name], name=fresh(f"{inner}_output"))
        graph.node.append(identity)
        added.add(identity.name)
    return added
