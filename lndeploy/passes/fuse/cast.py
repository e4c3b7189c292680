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
for a float X of that type the Cast is the identity; only a single-output node is rewritten.
A Cast that changes the type (an fp16 model with fp32 statistics) is a real conversion and stays.
"""

from __future__ import annotations

from onnxscript.rewriter import pattern

from lndeploy.passes.fuse import _common as C

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


def rules(notes: C.Notes) -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([NoOpCastAfterNorm.rule(notes), WideningRoundTrip.rule(notes),
                                   *(NoOpCastBeforeNorm.rule(n, notes) for n in NORM_OPS)])
