"""LayerNorm over trailing axes, written as primitive ops -> one ``LayerNormalization``.

    mean = mean(x, axes)                             axes = the last k axes; every spelling of
                                                     ``_stats.mean_of``: ReduceMean (keepdims=1),
                                                     ReduceSum / N, ReduceSum * (1/N), keepdims=0
                                                     and Unsqueeze back to the same axes
    d    = x - mean                                  (or mean - x: y = -LN(x), a scale of -1)
    var  = mean(d ** 2, axes)                        d ** 2 as Pow(d, 2) or Mul(d, d)
         | mean((x - m) ** 2, axes) | mean((m - x) ** 2, axes)   a Sub of its own, m the same mean
                                                     or a second one (torch's x.var(unbiased=False)
                                                     in the legacy export)
         | mean(x ** 2, axes) - mean ** 2            E[x^2] - E[x]^2 (ONNX's own LayerNormalization
                                                     function body, what its _expanded tests hold)
    y    = d / sqrt(var + eps)                       Sqrt+Div, Reciprocal+Mul, Pow(-0.5)+Mul, Div(1, .)+Mul
  ->
    y    = LayerNormalization(x, s; axis=-k, epsilon=eps, stash_type=1)    s = ones(x.shape[-k:]),
                                                     or -ones for d = mean - x

Mixed precision (what ONNX Runtime's optimizer also fuses): ``d`` is cast to a wider float type
before the statistics, ``c = Cast(d, to=W)``, and ``y = c / sqrt(mean(c ** 2) + eps)`` (or the
separate-Sub variance of c) becomes ``Cast(LayerNormalization(x, s), to=W)``; the Cast back to x's
type that usually follows is dropped by ``no_op_cast`` (a widening round trip is exact).

The rewrite happens only where the math is the same: all means over the same axes with the reduced
dims kept (or put back by Unsqueeze at exactly those axes), a sum divided by exactly N (the product
of the static reduced dims; 1/N within fp32 rounding), the exponent exactly 2, eps a scalar
constant (not a graph input) added before the root. The normalized dims may be symbolic: the scale
of ones is then ``ConstantOfShape(Gather(Shape(x), axes))``. Variance
divided by N-1 (ReduceSum/(N-1), refused, or a rescaled mean, which does not match) and eps added
after Sqrt are left. The affine part (``* scale + bias``) is folded in afterwards by the
``ln_scale`` and ``ln_bias`` rules.

Statistics that are also used elsewhere (a graph output Mean or InvStdDev, as in ONNX's expanded
function) do not stop the rewrite: ``y`` becomes the LN node, and the ops that compute the other
uses stay (``remove_nodes=False``; whatever is left dead is removed after the rule set ran).
"""

from __future__ import annotations

from onnxscript.rewriter import pattern


from lndeploy.passes.fuse import _common as C
from lndeploy.passes.fuse import _stats as S

NAME = "layer_norm"


class StatsNormFusion(pattern.RewriteRuleClassBase):
    """The statistics pattern shared by the trailing-axes and the channel-first rule."""

    rule_name = NAME

    def __init__(self, form: str, variance: str, notes: C.Notes, cast: bool = False):
        # remove_nodes=False: stats used elsewhere stay computed for those uses (see the docstring)
        super().__init__(f"{self.rule_name}[{form},{variance}{',cast' if cast else ''}]", remove_nodes=False)
        self.form, self.variance, self.notes, self.cast = form, variance, notes, cast

    def pattern(self, op, x, eps, p2, p2_mean, half, minus_half, one):
        mean = S.mean_of(op, x, name="mean")
        num = S.centred(op, x, mean, name="num")
        if self.cast:  # mixed precision: the statistics of Cast(x - mean) in a wider type
            num = op.Cast(num, _outputs=["wide"])
        var = S.variance(op, self.variance, x, num, mean, p2, p2_mean)
        return C.normalize(op, num, var, eps, self.form, half, minus_half, one)

    def check(self, context, x, eps, mean, var, p2=None, p2_mean=None, half=None, minus_half=None, one=None,
              var_centre=None, wide=None, **_):
        try:
            C.float_dtype(x)
            if wide is not None:
                check_widening(x, wide)
            C.check_exponents(p2, half, minus_half, one, p2_mean)
            axes = S.stats_axes(x, mean, var, var_centre)
            self.check_axes(x, axes)
            C.epsilon_of(eps, C.known_rank(x))
        except C.NotOurs:
            raise
        except C.MatchFailureError as err:
            self.notes.refuse(context.root, self.rule_name, err.reason)
            raise
        return True

    def check_axes(self, x, axes) -> None:
        if not C.is_trailing(axes, C.known_rank(x)):
            raise C.NotOurs(f"axes {list(axes)} are not the trailing axes: the channel-first rule's case")

    def rewrite(self, op, x, eps, mean, var, num, wide=None, **_):
        axes = S.stats_axes(x, mean, var)
        epsilon = C.epsilon_of(eps, C.known_rank(x))
        scale = self.scale(op, x, axes, num)
        y = C.typed(op.LayerNormalization(x, scale, axis=-len(axes), epsilon=epsilon, stash_type=1), x)
        return widened(op, y, wide)

    def scale(self, op, x, axes, num):
        """Ones over x's ``axes``, or minus ones where the numerator is ``mean - x`` (negation is exact)."""
        return C.ones(op, self.notes, x, axes, -1.0 if S.is_negated(num, x) else 1.0)


def check_widening(x, wide) -> None:
    """The Cast between ``x - mean`` and the statistics goes to a float type that holds every value
    of x's type (fp16/bf16 -> fp32/fp64, fp32 -> fp64), so it only widens."""
    to = wide.producer().attributes.get_int("to", 0)
    if x.dtype is None or (x.dtype.value, to) not in C.WIDENING and to != x.dtype.value:
        C.fail(f"the statistics are computed after a Cast to {C.type_name(to)}, which does not widen "
               f"{C.type_name(x.dtype.value if x.dtype else 0)}", wide.producer())


def widened(op, y, wide):
    """``y`` cast to the matched Cast's type (LN's output is x's type); ``no_op_cast`` drops a Cast back."""
    if wide is None:
        return y
    return op.Cast(y, to=wide.producer().attributes.get_int("to", 0))


def rules(notes: C.Notes) -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([StatsNormFusion.rule(form, variance, notes, cast)
                                   for variance in S.VARIANCES for form in C.FORMS for cast in (False, True)
                                   if not (cast and variance == "moments")])
