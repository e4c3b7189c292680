"""Pattern pieces and checks shared by the fuse rules.

The rules are written with onnxscript's rewriter (``onnxscript.rewriter.pattern``): a pattern
function, a check that refuses anything that is not the same math, and a replacement. What they
share lives here: the spellings of ``d**2`` and of ``d / sqrt(v + eps)``, reading the axes of a
``ReduceMean`` in both of its spellings (attribute before opset 18, input from 18), and rewriting a
scale or bias into the exact shape of the normalized dims. Reading constants is ``_constants``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter._basics import MatchFailureError

from lndeploy.passes.fuse._constants import FLOAT_TYPES, const_array, dim_of, is_static

# the forms of ``num / sqrt(var + eps)``: Div by the root, or Mul by its reciprocal on either side
FORMS = ("div", "mul", "mul_swapped")
# (from, to) Casts that hold every value exactly: fp16/bf16 -> fp32/fp64, fp32 -> fp64
_F16, _BF16, _F32, _F64 = (t.value for t in (ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.FLOAT,
                                               ir.DataType.DOUBLE))
WIDENING = frozenset({(_F16, _F32), (_F16, _F64), (_BF16, _F32), (_BF16, _F64), (_F32, _F64)})
# the most an epsilon may move when written as the float32 ``epsilon`` attribute
EPS_RTOL = 1e-3


@dataclass
class Notes:
    """Candidates a rule matched but refused, keyed by the node the match ended at."""

    refused: dict = field(default_factory=dict)  # ir.Node -> (rule, reason)
    names: itertools.count = field(default_factory=itertools.count)

    def refuse(self, node, rule: str, reason: str) -> None:
        self.refused.setdefault(node, (rule, reason))

    def roots(self) -> list:
        """The nodes refused matches ended at that are still in the graph."""
        return [n for n in self.refused if n.graph is not None]

    def left(self) -> list[dict]:
        """Refusals whose candidate is still in the graph (no later rule fused it)."""
        return [{"node": n.name or n.op_type, "rule": rule, "reason": reason}
                for n, (rule, reason) in self.refused.items() if n.graph is not None]

    def fresh_name(self, stem: str) -> str:
        return f"{stem}_lndeploy_fuse_{next(self.names)}"


def square(op, d, p2):
    """``d ** 2`` as ``Pow(d, p2)`` (p2 checked to be exactly 2) or ``Mul(d, d)``."""
    return pattern.OrValue([op.Pow(d, p2), op.Mul(d, d)])


def normalize(op, num, var, eps, form: str, half, minus_half, one):
    """``num / sqrt(var + eps)`` in ``form`` (see FORMS), with every spelling of the root.

    sqrt(v)     : Sqrt(v) | Pow(v, 0.5)
    1 / sqrt(v) : Reciprocal(sqrt(v)) | Pow(v, -0.5) | Div(1, sqrt(v))
    """
    if form == "div":
        return op.Div(num, _root(op, _plus_eps(op, var, eps), half))
    inverse = inverse_root(op, var, eps, half, minus_half, one)
    return op.Mul(num, inverse) if form == "mul" else op.Mul(inverse, num)


def inverse_root(op, var, eps, half, minus_half, one):
    """``1 / sqrt(var + eps)``: Reciprocal(sqrt) | Pow(var + eps, -0.5) | Div(1, sqrt)."""
    plus_eps = _plus_eps(op, var, eps)
    root = _root(op, plus_eps, half)
    return pattern.OrValue([op.Reciprocal(root), op.Pow(plus_eps, minus_half), op.Div(one, root)])


def _plus_eps(op, var, eps):
    return pattern.OrValue([op.Add(var, eps), op.Add(eps, var)])


def _root(op, plus_eps, half):
    return pattern.OrValue([op.Sqrt(plus_eps), op.Pow(plus_eps, half)])


class NotOurs(MatchFailureError):
    """A refusal because another rule handles the case (trailing vs non-trailing axes): no note."""


def fail(reason: str, *sources):
    raise MatchFailureError(reason, *[s for s in sources if s is not None])


def check_exponents(p2, half, minus_half, one, p2_mean=None) -> None:
    """The exponents and the numerator of the reciprocal must be exactly what the formula says."""
    for value, want, what in ((p2, 2.0, "square"), (half, 0.5, "square root"),
                              (minus_half, -0.5, "reciprocal square root"), (one, 1.0, "reciprocal"),
                              (p2_mean, 2.0, "square of the mean")):
        if value is None:
            continue  # that spelling was not used
        array = const_array(value)
        if array is None or array.size != 1 or float(array.reshape(())) != want:
            fail(f"the {what} uses {_show(array)} where the formula needs exactly {want}", value)


def rank_of(x) -> int:
    if x.shape is None:
        fail("the input's rank is unknown (shape inference could not type it)", x)
    return x.shape.rank()


def known_rank(x) -> int | None:
    """x's rank, or None for a value declared without a shape (a shape-less graph input): the rules
    that only need the trailing axes then work with negative axes (``axes_of_reduce``)."""
    return None if x.shape is None else x.shape.rank()


def reduce_axes(node, rank: int | None) -> tuple[int, ...]:
    """Sorted axes of a ReduceMean with keepdims=1, from its attribute or its input (see
    ``axes_of_reduce`` for an unknown rank)."""
    keepdims = node.attributes.get_int("keepdims", 1)
    if keepdims != 1:
        fail("a ReduceMean drops the reduced dims (keepdims=0), so it does not broadcast like LN", node)
    return axes_of_reduce(node, rank)


def axes_of_reduce(node, rank: int | None) -> tuple[int, ...]:
    """Sorted axes of a ReduceMean/ReduceSum, from its attribute or its input: non-negative, or for
    an input of unknown rank (``rank`` None) negative, which the data must then give (axes counted
    from the front cannot be told trailing or not without the rank)."""
    axes = node.attributes.get_ints("axes", None)
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        array = const_array(node.inputs[1])
        if array is None:
            fail(f"the {node.op_type} axes are not constant", node)
        axes = array.reshape(-1).tolist()
    if not axes:
        if node.attributes.get_int("noop_with_empty_axes", 0):
            fail(f"a {node.op_type} with empty axes and noop_with_empty_axes=1 reduces nothing", node)
        if rank is None:
            fail(f"the input's rank is unknown and the {node.op_type} reduces all of its axes", node)
        axes = list(range(rank))
    if rank is None:
        return negative_axes(node, axes)
    normalized = sorted({a + rank if a < 0 else a for a in axes})
    if normalized[0] < 0 or normalized[-1] >= rank or len(normalized) != len(axes):
        fail(f"the {node.op_type} axes {list(axes)} are not valid for rank {rank}", node)
    return tuple(normalized)


def negative_axes(node, axes) -> tuple[int, ...]:
    """``axes`` of an input whose rank is unknown, sorted: all negative, each once."""
    if any(a >= 0 for a in axes):
        fail(f"the input's rank is unknown and the {node.op_type} axes {list(axes)} count from the front, "
             "so they cannot be shown to be the trailing ones (declare the input's shape)", node)
    if len(set(axes)) != len(axes):
        fail(f"the {node.op_type} axes {list(axes)} repeat an axis", node)
    return tuple(sorted(axes))


def epsilon_of(eps, rank: int | None) -> float:
    array = const_array(eps)
    if array is None:
        fail("epsilon is not a constant (computed, or a graph input that can be overridden)", eps)
    if array.size != 1 or array.ndim > max_broadcast_rank(rank):
        fail(f"epsilon has shape {list(array.shape)}, not a scalar", eps)
    value = float(array.reshape(()))
    if not np.isfinite(value) or value < 0:
        fail(f"epsilon is {value}, not a finite non-negative number", eps)
    held = float(np.float32(value))
    if abs(held - value) > EPS_RTOL * value:
        # the epsilon attribute is a 32-bit float: 1e-50 (a double LN) would become 0, and a constant
        # row then gives 0 / 0 where the original gives 0
        fail(f"epsilon {value:g} does not fit LayerNormalization's float attribute (it would be {held:g})", eps)
    return held


def type_name(code: int) -> str:
    try:
        return ir.DataType(code).name
    except ValueError:
        return f"type {code}"


def float_dtype(x):
    dtype = x.dtype
    if dtype not in FLOAT_TYPES:
        fail(f"the input type {dtype} is not a float type LayerNormalization takes", x)
    return dtype


def max_broadcast_rank(rank: int | None) -> int:
    """The most dims a scalar constant may have without widening x's shape in the broadcast: x's
    rank, or 1 where it is unknown (a reduction over at least one axis means x has one)."""
    return 1 if rank is None else rank


def is_trailing(axes: tuple[int, ...], rank: int | None) -> bool:
    if rank is None:  # negative axes (``negative_axes``)
        return tuple(axes) == tuple(range(-len(axes), 0))
    return tuple(axes) == tuple(range(rank - len(axes), rank))


def static_dims(x, axes) -> tuple[int, ...]:
    dims = norm_dims(x, axes)
    if not is_static(dims):
        fail(f"the normalized dims {show_dims(dims)} are not static", x)
    return tuple(dims)


def norm_dims(x, axes) -> tuple:
    """x's dims along ``axes``: ints, names of symbolic dims, None for unknown ones (all of them for
    an x without a shape). LN itself needs none of them (``axis=-k``); only a scale or bias must be
    shown to have exactly these dims."""
    if x.shape is None:
        return (None,) * len(axes)
    return tuple(dim_of(x.shape[a]) for a in axes)


def typed(value, like, perm=None):
    """Give a new value the type and shape of ``like`` (permuted by ``perm``): later rules need ranks."""
    value.type = like.type
    if like.shape is not None:
        dims = list(like.shape)
        value.shape = ir.Shape([dims[p] for p in perm] if perm is not None else dims)
    return value


# the largest scale of ones written as a constant; beyond, it is computed (a 2**40 dim in a file)
ONES_MAX_ELEMENTS = 2**24


def ones(op, notes: Notes, x, axes, fill: float = 1.0) -> ir.Value:
    """A scale filled with ``fill`` of x's dims along ``axes``, in x's type: a constant where those
    dims are static (and not huge), else ``ConstantOfShape(Gather(Shape(x), axes))``."""
    dims = norm_dims(x, axes)
    if is_static(dims) and np.prod(dims, dtype=np.float64) <= ONES_MAX_ELEMENTS:
        data = np.full(dims, fill, dtype=x.dtype.numpy())
        return op.initializer(ir.tensor(data), name=notes.fresh_name(f"{x.name or 'x'}_ones"))
    picked = op.initializer(ir.tensor(np.array(list(axes), np.int64)), name=notes.fresh_name("norm_axes"))
    value = op.ConstantOfShape(op.Gather(op.Shape(x), picked),
                               value=ir.tensor(np.array([fill], dtype=x.dtype.numpy())))
    value.type = x.type
    value.shape = ir.Shape([None] * len(axes) if x.shape is None else [x.shape[a] for a in axes])
    return value


def show_dims(dims) -> str:
    """Dims for a message: sizes, symbolic names, '?' for unknown ones."""
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def is_all(value, number: float) -> bool:
    """True for a missing optional input when number is 0, or a constant (or a ConstantOfShape)
    filled with ``number``."""
    if value is None:
        return number == 0.0
    node = value.producer()
    if node is not None and node.op_type == "ConstantOfShape" and node.domain in ("", "ai.onnx"):
        fill = node.attributes.get("value")
        return fill is not None and bool(np.all(fill.value.numpy() == number))
    array = const_array(value)
    return array is not None and bool(np.all(array == number))


def param_layout(param, out_rank: int, out_axes, norm_dims) -> tuple[tuple, tuple]:
    """(param's shape, its dims along ``out_axes``), or refused where it does not broadcast as a
    scale or bias of the normalized dims does (see ``norm_param``). Over symbolic normalized dims
    the parameter must already have exactly those dims (the same names), reshaped by nothing."""
    if param.shape is None:
        fail("the scale or bias has no known shape", param)
    shape = tuple(dim_of(d) for d in param.shape)
    if None in shape:
        fail("the scale or bias has a dim of unknown size", param)
    if len(shape) > out_rank:
        fail(f"the scale or bias has rank {len(shape)}, more than the normalized input's {out_rank}", param)
    full = (1,) * (out_rank - len(shape)) + shape
    if any(full[a] != 1 for a in range(out_rank) if a not in out_axes):
        fail(f"the scale or bias of shape {list(shape)} varies along a non-normalized axis", param)
    picked = tuple(full[a] for a in out_axes)
    if any(p != 1 and (n is None or p != n) for p, n in zip(picked, norm_dims)):
        fail(f"the scale or bias of shape {list(shape)} does not broadcast to {show_dims(norm_dims)}", param)
    if not (is_static(shape) and is_static(norm_dims)) and not (shape == picked == tuple(norm_dims)):
        fail(f"the scale or bias of shape {list(shape)} would need reshaping to the symbolic dims "
             f"{show_dims(norm_dims)}", param)
    return shape, picked


def norm_param(op, notes: Notes, param, out_rank: int, out_axes, norm_dims) -> ir.Value:
    """``param`` (broadcast against an output of rank ``out_rank``) as a tensor of the normalized shape.

    Allowed only where it broadcasts as LN's scale and bias do: every dim of ``param`` that lines up
    with a non-normalized output axis is 1, every other dim is 1 or the normalized dim. ``out_axes``
    are the output axes the normalized dims sit on, in increasing order. Constants are reshaped and
    broadcast here; a computed tensor gets a Reshape (and an Expand where it broadcasts).
    """
    shape, picked = param_layout(param, out_rank, out_axes, norm_dims)
    if not is_static(norm_dims):
        return param  # already of exactly the normalized dims (param_layout)
    array = const_array(param)
    name = notes.fresh_name(param.name or "param")
    if array is not None:
        data = np.ascontiguousarray(np.broadcast_to(array.reshape(picked), norm_dims))
        return op.initializer(ir.tensor(data), name=name)
    value = param
    if shape != picked:
        value = op.Reshape(param, op.initializer(ir.tensor(np.array(picked, np.int64)), name=name + "_shape"))
        value.type, value.shape = param.type, ir.Shape(picked)  # later rules read its shape
    if picked != tuple(norm_dims):
        value = op.Expand(value, op.initializer(ir.tensor(np.array(norm_dims, np.int64)), name=name + "_dims"))
        value.type, value.shape = param.type, ir.Shape(norm_dims)
    return value


def _show(array) -> str:
    if array is None:
        return "a non-constant"
    return str(array.reshape(-1).tolist()[:4])
