"""RMS norm over trailing axes, written as primitive ops -> one ``RMSNormalization`` (opset 23).

    ms = ReduceMean(x ** 2, axes)                    axes = the last k axes, keepdims=1;
                                                     x ** 2 as Pow(x, 2) or Mul(x, x)
    y  = x / sqrt(ms + eps)                          Sqrt+Div, Reciprocal+Mul (rsqrt), Pow(-0.5)+Mul
  ->
    y  = RMSNormalization(x, ones(x.shape[-k:]); axis=-k, epsilon=eps, stash_type=1)

``* scale`` after it is folded in by the ``ln_scale`` rule. ``RMSNormalization`` exists from opset
23 on: in a model of a lower opset the pattern is left as it is and reported (ask for ``opset=23``
to fuse it). The same checks as for LayerNorm apply (constant scalar eps added before the root,
exponent exactly 2, trailing normalized dims). An ``x`` that is itself ``a - mean(a)`` is the
centred half of a LayerNorm the layer_norm rule refused: fusing only its second half would hide the
refusal, so it is left alone too.
"""

from __future__ import annotations

from onnxscript.rewriter import pattern

from lndeploy.passes.fuse import _common as C
from lndeploy.passes.fuse import _stats as S

NAME = "rms_norm"
MIN_OPSET = 23


class RmsNormFusion(pattern.RewriteRuleClassBase):
    def __init__(self, form: str, notes: C.Notes):
        super().__init__(f"{NAME}[{form}]")
        self.form = form
        self.notes = notes

    def pattern(self, op, x, eps, p2, half, minus_half, one):
        ms = op.ReduceMean(C.square(op, x, p2), _allow_other_inputs=True, _outputs=["ms"])
        return C.normalize(op, x, ms, eps, self.form, half, minus_half, one)

    def check(self, context, x, eps, ms, p2=None, half=None, minus_half=None, one=None, **_):
        if _is_centred(x):
            C.fail("the input is x - mean(x): a LayerNorm, not an RMS norm", x)
        try:
            C.float_dtype(x)
            C.check_exponents(p2, half, minus_half, one)
            rank = C.known_rank(x)
            axes = C.reduce_axes(ms.producer(), rank)
            if not C.is_trailing(axes, rank):
                C.fail(f"RMS norm over the non-trailing axes {list(axes)}", ms.producer())
            C.epsilon_of(eps, rank)
            opset = context.model.opset_imports.get("", 0)
            if opset < MIN_OPSET:
                # the opset here is the working copy's (raised to 17 for LayerNormalization), not
                # the file's, so it is not quoted
                C.fail(f"RMSNormalization needs opset {MIN_OPSET} (ask for --opset {MIN_OPSET})")
        except C.MatchFailureError as err:
            self.notes.refuse(context.root, NAME, err.reason)
            raise
        return True

    def rewrite(self, op, x, eps, ms, **_):
        rank = C.known_rank(x)
        axes = C.reduce_axes(ms.producer(), rank)
        scale = C.ones(op, self.notes, x, axes)
        return op.RMSNormalization(x, scale, axis=-len(axes), epsilon=C.epsilon_of(eps, rank), stash_type=1)


def _is_centred(x) -> bool:
    """x = a - m or m - a, m a statistic of a (a mean in any spelling, or a near-miss of one)."""
    node = x.producer()
    if node is not None and node.op_type == "Cast" and node.domain in ("", "ai.onnx"):
        node = node.inputs[0].producer()  # the mixed-precision spelling: Cast(x - mean) to a wider type
    if node is None or node.op_type != "Sub" or node.domain not in ("", "ai.onnx"):
        return False
    a, b = node.inputs[0], node.inputs[1]
    return S.reduces(b, a) or S.reduces(a, b)


def rules(notes: C.Notes) -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([RmsNormFusion.rule(form, notes) for form in C.FORMS])
