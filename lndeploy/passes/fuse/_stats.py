"""The spellings of a mean over some axes, as pattern pieces, and reading back what they compute.

    mean(t, A) = ReduceMean(t, A)                       keepdims=1
               | ReduceSum(t, A) / N                    N = prod(x.shape[a] for a in A), static dims
               | ReduceSum(t, A) * c  |  c * ReduceSum  c = 1/N within fp32 rounding
               | Unsqueeze(R, A)                        R any of these with keepdims=0, put back at A

(the Unsqueeze may also sit between ReduceSum and the division). The pattern only fixes the op
structure; ``reduction`` walks the matched producers and refuses anything that is not exactly the
mean: a divisor other than N (``/(N-1)`` is the unbiased variance), dims dropped and not put back
where they were, a sum that is never divided.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from onnxscript.rewriter import pattern

from lndeploy.passes.fuse import _common as C
from lndeploy.passes.fuse import _constants as K

ANY = pattern.ANY_VALUE
# 1/N rounded to fp32 is within half an fp32 ulp; one ulp leaves room for a constant computed as
# float32(1) / float32(N) by the exporter
RECIPROCAL_RTOL = float(np.finfo(np.float32).eps)


def mean_of(op, t, name: str | None = None):
    """Any spelling of the mean of ``t`` over some axes; the final value is bound as ``name``."""
    return pattern.OrValue([_average(op, t), op.Unsqueeze(_average(op, t), _allow_other_inputs=True)],
                           name=name)


def _average(op, t):
    def summed():  # fresh pattern nodes each time: one pattern node matches one graph node
        return pattern.OrValue([op.ReduceSum(t, _allow_other_inputs=True),
                                op.Unsqueeze(op.ReduceSum(t, _allow_other_inputs=True), _allow_other_inputs=True)])

    return pattern.OrValue([op.ReduceMean(t, _allow_other_inputs=True),
                            op.Div(summed(), ANY), op.Mul(summed(), ANY), op.Mul(ANY, summed())])


@dataclass(frozen=True)
class Reduction:
    axes: tuple[int, ...]  # sorted, of the reduced input's rank: non-negative, or negative where it is unknown
    kept: bool  # the reduced dims are there (keepdims=1 or put back by Unsqueeze)
    averaged: bool  # divided by N (ReduceMean, or ReduceSum and the division)
    node: object  # the reduce node, for the report


def mean_axes(value, x) -> tuple[int, ...]:
    """The axes ``value`` (matched by ``mean_of``) is the mean over, reduced dims kept; else refused."""
    found = reduction(value, x)
    if not found.averaged:
        C.fail("a ReduceSum is not divided by the number of elements it sums", found.node)
    if not found.kept:
        C.fail("a ReduceMean drops the reduced dims (keepdims=0) and no Unsqueeze puts them back, "
               "so it does not broadcast like LN", found.node)
    return found.axes


def reduction(value, x) -> Reduction:
    """What the chain of ops producing ``value`` reduces (inputs of ``x``'s rank and dims)."""
    node = value.producer()
    if node is None or node.domain not in ("", "ai.onnx"):
        C.fail("the statistic is not computed by a reduction")
    rank = C.known_rank(x)
    if node.op_type in ("ReduceMean", "ReduceSum"):
        kept = node.attributes.get_int("keepdims", 1) == 1
        return Reduction(C.axes_of_reduce(node, rank), kept, node.op_type == "ReduceMean", node)
    if node.op_type == "Unsqueeze":
        return _unsqueezed(node, x, rank)
    if node.op_type in ("Div", "Mul"):
        return _divided(node, x)
    C.fail(f"the statistic is computed by {node.op_type}, not a reduction", node)


def _unsqueezed(node, x, rank: int | None) -> Reduction:
    inner = reduction(node.inputs[0], x)
    if inner.kept:
        C.fail("an Unsqueeze adds dims to a reduction that kept its own", node)
    axes = node.attributes.get_ints("axes", None)
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        array = K.const_array(node.inputs[1])
        axes = None if array is None else array.reshape(-1).tolist()
    if axes is None:
        C.fail("the Unsqueeze axes are not constant", node)
    # Unsqueeze's axes count in its output, which has x's rank: the same numbering as the reduction's
    put_back = C.negative_axes(node, axes) if rank is None else tuple(sorted(a + rank if a < 0 else a for a in axes))
    if put_back != inner.axes:
        C.fail(f"the Unsqueeze puts dims back at {list(put_back)}, not at the reduced axes {list(inner.axes)}",
               node)
    return replace(inner, kept=True)


def _divided(node, x) -> Reduction:
    """ReduceSum / N or ReduceSum * (1/N): the constant must be exactly that N."""
    constants = [K.const_array(v) for v in node.inputs]
    side = 1 if node.op_type == "Div" or constants[1] is not None else 0
    factor = constants[side]
    inner = reduction(node.inputs[1 - side], x)
    if inner.averaged:
        C.fail("a mean is scaled again (an unbiased variance rescales the biased one)", node)
    if factor is None or factor.size != 1 or factor.ndim > C.max_broadcast_rank(C.known_rank(x)):
        C.fail("the sum is divided by something other than a constant scalar", node)
    count = int(np.prod(C.static_dims(x, inner.axes)))
    value = float(factor.reshape(()))
    if node.op_type == "Div" and value != count:
        C.fail(f"the sum of {count} elements is divided by {value:g}, not by {count}", node)
    if node.op_type == "Mul" and abs(value * count - 1.0) > RECIPROCAL_RTOL:
        C.fail(f"the sum of {count} elements is multiplied by {value:.9g}, not by 1/{count}", node)
    return replace(inner, averaged=True)


# what may sit between a reduction and a statistic of its input: mean_of's Unsqueeze/Div/Mul, and the
# Reshape/Expand/Cast/Identity of spellings no rule matches (``_unmatched``)
STATISTIC_STEPS = frozenset({"Unsqueeze", "Div", "Mul", "Reshape", "Expand", "Cast", "Identity"})


def reduces(value, t) -> bool:
    """True when ``value`` comes out of a ReduceMean or ReduceSum of ``t`` (through STATISTIC_STEPS):
    a statistic of ``t``, whether or not it is exactly its mean."""
    node = value.producer() if value is not None else None
    for _ in range(4):  # the longest chain mean_of matches: Unsqueeze(Div(Unsqueeze(ReduceSum)))
        if node is None or node.domain not in ("", "ai.onnx"):
            return False
        if node.op_type in ("ReduceMean", "ReduceSum"):
            return node.inputs[0] is t
        if node.op_type not in STATISTIC_STEPS:
            return False
        producers = [v.producer() for v in node.inputs if v is not None and v.producer() is not None]
        node = next((p for p in producers if p.op_type in STATISTIC_STEPS | {"ReduceMean", "ReduceSum"}), None)
    return False


# the spellings of the biased variance (see ``variance``)
VARIANCES = ("centred", "separate", "moments")


def centred(op, x, mean, name: str | None = None):
    """``x - mean`` or ``mean - x`` (bound as ``name``; ``is_negated`` tells which)."""
    return pattern.OrValue([op.Sub(x, mean), op.Sub(mean, x)], name=name)


def is_negated(diff, x) -> bool:
    """True for ``mean - x`` (matched by ``centred``)."""
    return diff.producer().inputs[0] is not x


def variance(op, kind: str, x, num, mean, p2, p2_mean):
    """The biased variance of ``x`` over the mean's axes, spelled as ``kind`` (see VARIANCES).

    centred  : mean(num ** 2)                       num = +-(x - mean), shared with the numerator
    separate : mean((x - m) ** 2) | mean((m - x) ** 2)    a Sub of its own; m the same mean or a
                                                    second one (bound as ``var_centre``)
    moments  : mean(x ** 2) - mean ** 2             E[x^2] - E[x]^2

    every mean in any spelling of ``mean_of``; the one the variance (or E[x^2]) comes from is bound
    as ``var``, and its axes are checked against the mean's (``stats_axes``).
    """
    if kind == "centred":
        return mean_of(op, C.square(op, num, p2), name="var")
    if kind == "separate":
        diff = centred(op, x, mean_of(op, x, name="var_centre"))
        return mean_of(op, C.square(op, diff, p2), name="var")
    mean_of_square = mean_of(op, C.square(op, x, p2), name="var")
    return op.Sub(mean_of_square, C.square(op, mean, p2_mean))


def stats_axes(x, mean, var, centre=None) -> tuple[int, ...]:
    """The axes all means reduce over (the variance's own mean ``centre`` too); one and the same set."""
    axes = mean_axes(mean, x)
    for other in (var, centre):
        if other is None:
            continue
        other_axes = mean_axes(other, x)
        if axes != other_axes:
            C.fail(f"the mean is over axes {list(axes)} but the variance over {list(other_axes)}",
                   other.producer())
    return axes
