"""Collapse the Flatten ... Reshape around a LayerNormalization (ONNX's own function body) into one LN.

ONNX's LayerNormalization function body (what its ``*_expanded`` test models and function-inlining
exporters hold) flattens X to 2-D, normalizes the second dim and reshapes back. Once the layer_norm
rule has fused the statistics, what is left is

    y = Reshape(Cast?(LayerNormalization(Cast?(Flatten(x, axis=f)), s[, b]; axis=1 | -1)), Shape(x))
  ->
    y = LayerNormalization(x, s'[, b']; axis=f - rank(x))

Flatten is row-major, so the flattened second dim holds exactly x's dims f..rank-1 in order, the LN
over it is the LN over those dims, and Reshape(., Shape(x)) is Flatten's exact inverse. ``s'``/``b'``
are the scale and bias (N = prod(x.shape[f:]) elements) reshaped to x.shape[f:]. Only where that is
provably so: each Cast is to the type it already has, the Shape is the whole Shape of the same x,
the LN normalizes the flattened dim only and its Mean/InvStdDev outputs are unused, x's dims from f
on are static, scale and bias have N elements, and nothing else reads the LN or the Cast after it.
Anything else stays as it is.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from lndeploy.passes.fuse import _common as C
from lndeploy.passes.fuse import _constants as K

NAME = "unflatten_layer_norm"


class UnflattenFusion(pattern.RewriteRuleClassBase):
    def __init__(self, notes: C.Notes):
        # remove_nodes=False: the Flatten may also feed the ops behind ONNX's Mean/InvStdDev outputs
        super().__init__(NAME, remove_nodes=False)
        self.notes = notes

    def pattern(self, op, x):
        flat = op.Flatten(x, _outputs=["flat"])
        ln_in = pattern.OrValue([op.Cast(flat, _outputs=["cast_in"]), flat])
        y = op.LayerNormalization(ln_in, _allow_other_inputs=True, _outputs=["y"])
        out = pattern.OrValue([op.Cast(y, _outputs=["cast_out"]), y])
        return op.Reshape(out, op.Shape(x, _outputs=["shape"]), _outputs=["z"])

    def check(self, context, x, flat, y, shape, cast_in=None, cast_out=None, **_):
        try:
            _first, dims = geometry(x, flat)
            for cast in (cast_in, cast_out):
                if cast is not None and cast.producer().attributes.get_int("to", 0) != x.dtype.value:
                    C.fail("a Cast around the LN changes the type", cast.producer())
            shape_node, ln = shape.producer(), y.producer()
            if any(k in shape_node.attributes for k in ("start", "end")):
                C.fail("the Shape is a slice of x's shape", shape_node)
            if ln.attributes.get_int("axis", -1) not in (1, -1):
                C.fail("the LN normalizes more than the flattened dim", ln)
            if any(out.uses() for out in ln.outputs[1:]):
                C.fail("the LN's Mean/InvStdDev outputs are used (they are of the flattened shape)", ln)
            for value in (y, cast_out):
                if value is not None and (len(value.uses()) != 1 or value.is_graph_output()):
                    C.fail("the flattened LN output is also used elsewhere", ln)
            count = int(np.prod(dims))
            for param in ln.inputs[1:]:
                if param is not None and _elements(param) != count:
                    C.fail(f"the LN's scale or bias does not have the {count} elements of x's dims", ln)
        except C.MatchFailureError as err:
            self.notes.refuse(context.root, NAME, err.reason)
            raise
        return True

    def rewrite(self, op, x, flat, y, **_):
        first, dims = geometry(x, flat)
        ln = y.producer()
        params = [self.reshaped(op, p, dims) if p is not None else None for p in ln.inputs[1:]]
        while params and params[-1] is None:
            params.pop()
        attrs = {k: v.value for k, v in ln.attributes.items() if k != "axis"}
        return op.LayerNormalization(x, *params, axis=first - C.rank_of(x), **attrs)

    def reshaped(self, op, param, dims):
        source = _unreshaped(param, dims)
        if source is not None:
            return source
        array = K.const_array(param)
        name = self.notes.fresh_name(param.name or "param")
        if array is not None:
            return op.initializer(ir.tensor(np.ascontiguousarray(array.reshape(dims))), name=name)
        return op.Reshape(param, op.initializer(ir.tensor(np.array(dims, np.int64)), name=name + "_shape"))


def _unreshaped(value, dims):
    """``value`` or the tensor it was Reshaped/Flattened from, where that has exactly ``dims``: ONNX's
    function body flattens Scale and B, ln_scale/ln_bias reshape them to one dim; undone here."""
    found = None
    for _ in range(8):  # a short chain of pure reshapes; the deepest tensor of that shape is taken
        if value.shape is not None and tuple(value.shape) == tuple(dims):
            found = value
        node = value.producer()
        if node is None or node.op_type not in ("Reshape", "Flatten") or node.domain not in ("", "ai.onnx"):
            break
        value = node.inputs[0]
    return found


def _elements(value) -> int | None:
    shape = value.shape
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return int(np.prod(tuple(shape)))


def geometry(x, flat) -> tuple[int, tuple[int, ...]]:
    """(Flatten's axis, non-negative; x's static dims from it on)."""
    rank = C.rank_of(x)
    axis = flat.producer().attributes.get_int("axis", 1)
    first = axis + rank if axis < 0 else axis
    if not 0 <= first <= rank:
        C.fail(f"the Flatten axis {axis} is not valid for rank {rank}", flat.producer())
    if first == rank:
        C.fail("the Flatten puts every dim in the first one: the LN normalizes nothing of x", flat.producer())
    return first, C.static_dims(x, range(first, rank))


def rules(notes: C.Notes) -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([UnflattenFusion.rule(notes)])
