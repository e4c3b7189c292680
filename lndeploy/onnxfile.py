"""Loading and saving ONNX files with errors a person can act on."""

from __future__ import annotations

import os
from pathlib import Path

from lndeploy.errors import BadInputError, first_line
from lndeploy.fileio import atomic_path

_TWO_GIB = 2**31 - 1


def load_model(path: str | os.PathLike, load_external_data: bool = True, notes: list | None = None):
    """Read an ONNX file; a missing, corrupt or truncated file raises ``BadInputError``. Nodes out of
    topological order are sorted (``sort_nodes``), with a line in ``notes`` when given."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{path} is a directory, not an ONNX file")
    if not path.is_file():
        raise BadInputError(f"ONNX file not found: {path}")
    try:
        # format="protobuf": onnx.load otherwise picks a JSON or text parser from the suffix (.json, .txt)
        model = onnx.load(str(path), format="protobuf", load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as err:
        raise BadInputError(f"{path} is not a readable ONNX file ({type(err).__name__}: {err})") from err
    if not model.graph.node and not model.graph.output:
        raise BadInputError(f"{path} is not a readable ONNX file (empty or truncated graph)")
    side_files = external_data_files(model)
    reordered = sort_nodes(model.graph)
    if notes is not None:
        notes.extend(sorted_note(name) for name in reordered)
    try:
        _check(model, path, side_files, path_is_model=not reordered)
    except Exception as err:  # onnx raises several unrelated types here
        # the checker spreads one sentence over lines ("... input 'a' of node: / name: ... / is not
        # output of any previous nodes."): joined, so that the line names the node and the reason
        first = " ".join(str(err).split())[:400] or first_line(err)
        missing = [f for f in side_files if not (path.parent / f).is_file()]
        if missing:
            raise BadInputError(f"{path} keeps its weights in {missing[0]}, which is not beside it "
                                f"({path.parent / missing[0]} not found): copy the two files together") from err
        raise BadInputError(f"{path} is not a valid ONNX model: {first}") from err
    if load_external_data and side_files:
        _load_external_data(model, path)
    return model


def _check(model, path: Path, side_files: list, path_is_model: bool) -> None:
    """ONNX's checker, except for its demand of a shape field on every graph input and output (ONNX
    Runtime runs a tensor declared without one, of any rank, and exporters write such files) and for
    ONNX Runtime's LayerNormalization below opset 17 (``_early_layer_norms``): the field is added and
    those nodes put in a domain of their own for the check, then both undone. With side files the checker is given the path: it
    then finds them beside the model (given a ModelProto it looks in the current folder), and it
    never needs the weights in memory; a path cannot carry those changes or the sorted nodes
    (``path_is_model`` False), so such a file gets only the side-file check of the caller."""
    import onnx

    shapeless = [v.type.tensor_type for v in [*model.graph.input, *model.graph.output]
                 if value_kind(v) == "tensor" and not v.type.tensor_type.HasField("shape")]
    if side_files and (shapeless or not path_is_model or _early_layer_norms(model)):
        missing = [f for f in side_files if not (path.parent / f).is_file()]
        if missing:
            raise FileNotFoundError(missing[0])
        return
    early = _early_layer_norms(model)
    try:
        for tensor in shapeless:
            tensor.shape.SetInParent()
        for node in early:  # checked as an op of a domain of its own: the checker passes those
            node.domain = _HELD_DOMAIN
        if early:
            model.opset_import.add(domain=_HELD_DOMAIN, version=1)
        onnx.checker.check_model(str(path) if side_files else model, full_check=False)
        for node in early:  # what the schema check would have said of them
            unknown = sorted({a.name for a in node.attribute} - {"axis", "epsilon", "stash_type"})
            if unknown:
                raise ValueError(f"Unrecognized attribute: {unknown[0]} for operator LayerNormalization "
                                 f"(node {node.name!r})")
    finally:
        for tensor in shapeless:
            tensor.ClearField("shape")
        for node in early:
            node.domain = ""
        if early:
            kept = [o for o in model.opset_import if o.domain != _HELD_DOMAIN]
            del model.opset_import[:]
            model.opset_import.extend(kept)


_HELD_DOMAIN = "lndeploy.checking"


def _early_layer_norms(model) -> list:
    """LayerNormalization nodes below opset 17, as ONNX Runtime's optimizer writes them (its contrib
    kernel: same attributes and math as opset 17's) at the file's opset, e.g. 12: ORT runs them,
    ONNX's checker refuses them ("No Op registered"). They are left out of the schema check only."""
    from lndeploy.plugin_spec import iter_graphs

    if opset_version(model) >= 17:
        return []
    return [n for g in iter_graphs(model.graph) for n in g.node
            if n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx")]


def sort_nodes(graph) -> list[str]:
    """Put the nodes of ``graph`` and of its subgraphs in topological order, as ONNX Runtime does on
    load (ONNX's checker only complains), keeping the file's order wherever it is free to. Names a
    node's subgraphs read from this graph count as its inputs. A graph with a cycle is left as it is
    (ONNX Runtime refuses it too). Returns the names of the graphs reordered. (On the protobuf: onnx_ir's
    TopologicalSortPass would need a round trip through onnx_ir, which copies every weight.)"""
    from lndeploy.plugin_spec import iter_graphs

    # each graph is sorted when the walk reaches it, before the walk reads its nodes
    return [g.name for g in iter_graphs(graph) if _sort_one(g)]


def _sort_one(graph) -> bool:
    import heapq

    nodes = list(graph.node)
    produced = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    needs = [{produced[name] for name in _reads(node) if name in produced} - {i} for i, node in enumerate(nodes)]
    users = [[] for _ in nodes]
    for i, wanted in enumerate(needs):
        for j in wanted:
            users[j].append(i)
    waiting = [len(wanted) for wanted in needs]
    ready = [i for i, count in enumerate(waiting) if count == 0]
    order = []
    while ready:  # Kahn's algorithm, lowest file position first
        i = heapq.heappop(ready)
        order.append(i)
        for user in users[i]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    if len(order) < len(nodes) or order == sorted(order):
        return False
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)
    return True


def sorted_note(graph_name: str) -> str:
    return f"sorted the nodes of graph {graph_name!r} topologically (the file's order was not)"


def _reads(node) -> set:
    names = set(node.input)
    for attr in node.attribute:
        for sub in list(attr.g.node if attr.HasField("g") else []) + [n for g in attr.graphs for n in g.node]:
            names |= _reads(sub)
    return names


def value_kind(value) -> str:
    """"tensor", "sequence", "map", "optional" or "sparse_tensor": what an ONNX graph input holds."""
    kind = value.type.WhichOneof("value")
    return {"tensor_type": "tensor", "sequence_type": "sequence", "map_type": "map",
            "optional_type": "optional", "sparse_tensor_type": "sparse_tensor"}.get(kind, str(kind))


def graph_inputs(model) -> list:
    """The graph inputs a caller feeds: old exporters (IR < 4) also list every initializer as an input."""
    weights = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in weights]


def non_tensor_inputs(model) -> list[tuple[str, str]]:
    """(name, kind) of the graph inputs that are not tensors (sequences from scripted loops, maps...)."""
    return [(v.name, value_kind(v)) for v in graph_inputs(model) if value_kind(v) != "tensor"]


def external_data_files(model) -> list[str]:
    """The side files (relative locations) that hold some of ``model``'s tensors, in first-use order."""
    from lndeploy import plugin_spec

    files = []
    for graph in plugin_spec.iter_graphs(model.graph):
        tensors = list(graph.initializer)
        for node in graph.node:  # Constant values and other tensor attributes may be external too
            for attr in node.attribute:
                tensors += ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
        for tensor in tensors:
            if tensor.data_location == 1:  # TensorProto.EXTERNAL
                location = next((e.value for e in tensor.external_data if e.key == "location"), "")
                if location not in files:
                    files.append(location)
    return files


def _load_external_data(model, path: Path) -> None:
    """Read the side files, which live beside the model whatever the current folder is."""
    from onnx.external_data_helper import load_external_data_for_model

    try:
        load_external_data_for_model(model, str(path.parent))
    except Exception as err:  # onnx raises ValidationError, OSError or ValueError here
        text = first_line(err)
        raise BadInputError(f"{path}: cannot read its external weights ({text})") from err


def save_model(model, path: str | os.PathLike) -> None:
    """Write ``model`` as one self-contained file, atomically (models over 2 GiB get a .data file)."""
    import onnx

    path = Path(path)
    if model.ByteSize() > _TWO_GIB:
        data_name = path.name + ".data"
        with atomic_path(path) as tmp:
            onnx.save_model(model, str(tmp), save_as_external_data=True, location=data_name)
            # the data file was written under its final name beside tmp; tmp is renamed last
        return
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))


def opset_version(model, domain: str = "") -> int:
    for entry in model.opset_import:
        if entry.domain in (domain, "ai.onnx" if domain == "" else domain):
            return entry.version
    return 0


def op_counts(model) -> dict[str, int]:
    """How often each op type occurs, subgraphs (Scan/Loop/If bodies) included."""
    import collections

    from lndeploy import plugin_spec

    return dict(collections.Counter(n.op_type for g in plugin_spec.iter_graphs(model.graph) for n in g.node))


def primitive_norm_hint(ops) -> str | None:
    """ReduceMean with Sqrt (or Pow / Reciprocal) is how LayerNorm looks when written as primitive ops
    (older opsets, other exporters): say that ``lndeploy fuse`` makes each one node."""
    if ops.get("ReduceMean", 0) >= 2 and (ops.get("Sqrt") or ops.get("Pow") or ops.get("Reciprocal")):
        return (f"{ops['ReduceMean']} ReduceMean nodes with Sqrt/Pow: LayerNorm or RMS norm written as "
                f"primitive ops? `lndeploy fuse` makes each one node")
    return None
