"""What looks like a LayerNorm but no rule matched, so that no candidate is left without a note.

The rules note what they matched and refused. A spelling none of them knows (docs/fuse.md, "Exact
LN spellings not recognised yet": a ``Neg`` numerator, keepdims=0 put back by a ``Reshape``, an
``Unsqueeze`` after ``Add(eps)``) would otherwise be left silently. After the rules ran, every
centring still in the graph,

    d = x - s   or   s - x,       s a statistic of x (``_stats.reduces``: Reduce{Mean,Sum}(x) through
                                  Unsqueeze, Reshape, Expand, Cast, Identity, Div or Mul)

is reported, unless a refusal already explains it (it lies upstream of a refused match) or x already
feeds a normalization node (the LN was fused; what is left computes statistics for other uses).
"""

from __future__ import annotations

from lndeploy.passes.fuse import _stats as S

# how far upstream of a refused match a centring counts as explained by that refusal
_UPSTREAM = 16
_NORMS = frozenset({"LayerNormalization", "RMSNormalization"})
REASON = ("x - mean(x) is still computed here, and what follows it is no LayerNorm spelling the rules "
          "know (docs/fuse.md lists them), so it was left as it is")


def unmatched(model, refused_roots) -> list[dict]:
    """{"node", "rule", "reason"} for each centring left (see the module doc) in ``model`` (onnx_ir)."""
    explained = _upstream(refused_roots)
    found = []
    for node in list(model.graph.all_nodes()):  # subgraphs (Scan/Loop/If bodies) too
        if node.op_type != "Sub" or node.domain not in ("", "ai.onnx") or node in explained:
            continue
        a, b = node.inputs[0], node.inputs[1]
        x = a if S.reduces(b, a) else b if S.reduces(a, b) else None
        if x is not None and not _feeds_a_norm(x):
            found.append({"node": node.name or node.op_type, "rule": "layer_norm", "reason": REASON})
    return found


def _feeds_a_norm(x) -> bool:
    return any(node.op_type in _NORMS for node, _ in x.uses())


def _upstream(roots) -> set:
    """The nodes at most _UPSTREAM steps upstream of ``roots`` (still in a graph), roots included."""
    seen, frontier = set(), [r for r in roots if r.graph is not None]
    for _ in range(_UPSTREAM):
        next_frontier = []
        for node in frontier:
            if node in seen:
                continue
            seen.add(node)
            next_frontier.extend(v.producer() for v in node.inputs if v is not None and v.producer() is not None)
        frontier = next_frontier
    return seen
