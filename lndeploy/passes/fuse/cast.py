"""Drop a Cast to the type a normalization node already has.

    z = Cast(N(x, ...), to=T)       T the element type of N's output     ->   z = N(x, ...)

for N = LayerNormalization or RMSNormalization. ONNX's own LayerNormalization function body (what
its ``*_expanded`` test models and function-inlining exporters hold) casts the normalized value to
the input type before ``* scale + bias``; for a float input that Cast is the identity, and it is
what stands between the fused node and the ``ln_scale`` / ``ln_bias`` folds. Also a round trip
through a wider type:

    z = Cast(Cast(N(x, ...), to=W), to=T)   T N's type, W wider (fp16 -> fp32, ...)   ->   z = N(x, ...)

which is exact (every value of T is one of W), and is what the mixed-precision LayerNorm spelling
leaves once the layer_norm rule fused it (``Cast(LN(x), to=W)`` where the graph casts back to T).
And a Cast into the node that does not change the type:

    z = N(Cast(x, to=T), ...)       T x's own element type                 ->   z = N(x, ...)

ONNX's RMSNormalization function body casts X to the statistics type first (``XU = Cast(X)``), and
for a float X of that type the Cast is the identity; only a single-output node is rewritten. And the
normalization of a widened x, cast back:

    z = Cast(N(Cast(x, to=FLOAT), 1[, 0]; stash_type=1), to=T)    T x's type (fp16, bf16)
      ->   z = N(x, 1[, 0]; stash_type=1)                          in T

which is the definition of ``stash_type=1`` (ONNX's function bodies compute in float and cast the
result back to T) with unit scale and zero bias: ``x.float()`` normalized then ``.to(x.dtype)``, as
in T5-style RMS norms and ORT's SimplifiedLayerNorm tests. A scale or bias in float would be
applied before the rounding to T, not after: such a node is left (with a note).
A Cast that changes the type (an fp16 model with fp32 statistics) is a real conversion and stays.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from lndeploy.passes.fuse import _common as C
from lndeploy.passes.fuse import _constants as K
from lndeploy.passes.fuse._affine import bias_of

NAME = "no_op_cast"
NORM_OPS = ("LayerNormalization", "RMSNormalization")


class NoOpCastAfterNorm(pattern.RewriteRuleClassBase):
    def __init__(self, notes: C.Notes):
        super().__init__(NAME)
        self.notes = notes

    def pattern(self, op, y):
        return op.Cast(y, _outputs=["z"])

    def check(self, context, y, z, **_):
        node = y.producer()
        if node is None or node.op_type not in NORM_OPS or node.domain not in ("", "ai.onnx"):
            C.fail("the Cast does not follow a normalization node")
        to = z.producer().attributes.get_int("to", 0)
        if y.dtype is None or to != y.dtype.value:
            if any(use.op_type in ("Mul", "Add") for use, _ in z.uses()) and y.dtype is not None:
                # an affine part after a real conversion is a candidate the ln_scale/ln_bias folds never see
                self.notes.refuse(context.root, NAME, f"the Cast to {C.type_name(to)} after the {y.dtype.name} "
                                  f"{node.op_type} comes before the scale/bias that follows it: folded into the "
                                  f"node they would be applied in {y.dtype.name}, before the Cast, so they stay")
            C.fail("the Cast changes the type")
        return True

    def rewrite(self, op, y, **_):
        return y


class WideningRoundTrip(NoOpCastAfterNorm):
    def pattern(self, op, y):
        return op.Cast(op.Cast(y, _outputs=["w"]), _outputs=["z"])

    def check(self, context, y, z, w=None, **_):
        super().check(context, y, z)
        to = w.producer().attributes.get_int("to", 0)
        if (y.dtype.value, to) not in C.WIDENING:
            C.fail("the inner Cast narrows")
        return True


class NoOpCastBeforeNorm(pattern.RewriteRuleClassBase):
    def __init__(self, norm_op: str, notes: C.Notes):
        super().__init__(f"{NAME}[{norm_op},input]")
        self.norm_op, self.notes = norm_op, notes

    def pattern(self, op, x):
        return getattr(op, self.norm_op)(op.Cast(x, _outputs=["c"]), _allow_other_inputs=True, _outputs=["y"])

    def check(self, context, x, c, y, **_):
        if x.dtype is None or c.producer().attributes.get_int("to", 0) != x.dtype.value:
            C.fail("the Cast changes the type")
        if len(y.producer().outputs) != 1:
            C.fail("the node has statistics outputs too")
        return True

    def rewrite(self, op, x, y, **_):
        node = y.producer()
        attrs = {k: v.value for k, v in node.attributes.items()}
        return C.typed(getattr(op, self.norm_op)(x, *node.inputs[1:], **attrs), y)


class CastBackFromFloat(pattern.RewriteRuleClassBase):
    def __init__(self, norm_op: str, notes: C.Notes):
        super().__init__(f"{NAME}[{norm_op},float round trip]")
        self.norm_op, self.notes = norm_op, notes

    def pattern(self, op, x):
        y = getattr(op, self.norm_op)(op.Cast(x, _outputs=["w"]), _allow_other_inputs=True, _outputs=["y"])
        return op.Cast(y, _outputs=["z"])

    def check(self, context, x, w, y, z, **_):
        node = y.producer()
        if x.dtype is None or z.producer().attributes.get_int("to", 0) != x.dtype.value:
            C.fail("the Cast after the node does not go back to the input's type")
        wide = w.producer().attributes.get_int("to", 0)
        if wide == x.dtype.value:
            C.fail("the Cast into the node keeps the type (NoOpCastBeforeNorm's case)")
        try:
            if wide != ir.DataType.FLOAT.value:
                C.fail(f"the node computes in {C.type_name(wide)}, and stash_type=1 in {x.dtype.name} would "
                       "compute in float", w.producer())
            if (x.dtype.value, wide) not in C.WIDENING:
                C.fail(f"a Cast from {x.dtype.name} to float does not only widen", w.producer())
            if len(node.outputs) != 1 or node.attributes.get_int("stash_type", 1) != 1:
                C.fail("the node has statistics outputs, or computes in another type than float", node)
            if not C.is_all(node.inputs[1], 1.0) or not C.is_all(bias_of(node), 0.0):
                C.fail(f"the node's scale or bias is applied in float before the Cast to {x.dtype.name}: "
                       "moving it after the rounding would change the result", node)
        except C.MatchFailureError as err:
            self.notes.refuse(context.root, NAME, err.reason)
            raise
        return True

    def rewrite(self, op, x, y, **_):
        node = y.producer()
        attrs = {k: v.value for k, v in node.attributes.items()}
        scale = _ones_like(op, node.inputs[1], x.dtype, self.notes)
        return C.typed(getattr(op, self.norm_op)(x, scale, **attrs), x)


def _ones_like(op, scale, dtype, notes: C.Notes):
    """A scale of ones of ``scale``'s shape in ``dtype``: a constant, or its ConstantOfShape again."""
    array = K.const_array(scale)
    if array is not None:
        return op.initializer(ir.tensor(np.ones(array.shape, dtype.numpy())), name=notes.fresh_name("ones"))
    shape = scale.producer().inputs[0]  # is_all passed: a ConstantOfShape of the normalized dims
    value = op.ConstantOfShape(shape, value=ir.tensor(np.array([1], dtype.numpy())))
    value.dtype, value.shape = dtype, scale.shape
    return value


def rules(notes: C.Notes) -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([NoOpCastAfterNorm.rule(notes), WideningRoundTrip.rule(notes),
                                   *(NoOpCastBeforeNorm.rule(n, notes) for n in NORM_OPS),
                                   *(CastBackFromFloat.rule(n, notes) for n in NORM_OPS)])
