"""LayerNorm over trailing axes, written as primitive ops -> one ``LayerNormalization``.

    mean = ReduceMean(x, axes)                       axes = the last k axes, keepdims=1
    d    = x - mean
    var  = ReduceMean(d ** 2, axes)                  d ** 2 as Pow(d, 2) or Mul(d, d)
         | ReduceMean((x - ReduceMean(x, axes)) ** 2, axes)    the variance's own mean (torch's
                                                     x.var(unbiased=False) in the legacy export)
         | ReduceMean(x ** 2, axes) - mean ** 2      E[x^2] - E[x]^2 (ONNX's own LayerNormalization
                                                     function body, what its _expanded tests hold)
    y    = d / sqrt(var + eps)                       Sqrt+Div, Reciprocal+Mul, Pow(-0.5)+Mul, Div(1, .)+Mul
  ->
    y    = LayerNormalization(x, ones(x.shape[-k:]); axis=-k, epsilon=eps, stash_type=1)

ReduceMean may carry its axes as an attribute (opset < 18, what torch's legacy exporter writes) or as
an input (opset >= 18). The rewrite happens only where the math is the same: both means over the
same axes, keepdims=1, the exponent exactly 2, eps a scalar constant (not a graph input) added
before the root, and the normalized dims static. Variance divided by N-1 (ReduceSum/(N-1) or a
rescaled mean) and eps added after Sqrt do not match the pattern at all. The affine part
(``* scale + bias``) is folded in afterwards by the ``ln_scale`` and ``ln_bias`` rules.

Statistics that are also used elsewhere (a graph output Mean or InvStdDev, as in ONNX's expanded
function) do not stop the rewrite: ``y`` becomes the LN node, and the ops that compute the other
uses stay (``remove_nodes=False``; whatever is left dead is removed after the rule set ran).
"""

from __future__ import annotations

from onnxscript.rewriter import pattern

from lndeploy.passes.fuse import _common as C

NAME = "layer_norm"


class StatsNormFusion(pattern.RewriteRuleClassBase):
    """The statistics pattern shared by the trailing-axes and the channel-first rule."""

    rule_name = NAME

    def __init__(self, form: str, variance: str, notes: C.Notes):
        # remove_nodes=False: stats used elsewhere stay computed for those uses (see the docstring)
        super().__init__(f"{self.rule_name}[{form},{variance}]", remove_nodes=False)
        self.form, self.variance, self.notes = form, variance, notes

    def pattern(self, op, x, eps, p2, p2_mean, half, minus_half, one):
        mean = op.ReduceMean(x, _allow_other_inputs=True, _outputs=["mean"])
        d = op.Sub(x, mean)
        var = C.variance(op, self.variance, x, d, mean, p2, p2_mean)
        return C.normalize(op, d, var, eps, self.form, half, minus_half, one)

    def check(self, context, x, eps, mean, var, p2=None, p2_mean=None, half=None, minus_half=None, one=None,
              var_centre=None, **_):
        try:
            C.float_dtype(x)
            C.check_exponents(p2, half, minus_half, one, p2_mean)
            axes = C.stats_axes(x, mean, var, var_centre)
            self.check_axes(x, axes)
            C.epsilon_of(eps, C.rank_of(x))
            C.static_dims(x, axes)
        except C.NotOurs:
            raise
        except C.MatchFailureError as err:
            self.notes.refuse(context.root, self.rule_name, err.reason)
            raise
        return True

    def check_axes(self, x, axes) -> None:
        if not C.is_trailing(axes, C.rank_of(x)):
            raise C.NotOurs(f"axes {list(axes)} are not the trailing axes: the channel-first rule's case")

    def rewrite(self, op, x, eps, mean, var, **_):
        rank = C.rank_of(x)
        axes = C.stats_axes(x, mean, var)
        epsilon = C.epsilon_of(eps, rank)
        scale = C.ones(op, self.notes, x, C.static_dims(x, axes))
        return op.LayerNormalization(x, scale, axis=-len(axes), epsilon=epsilon, stash_type=1)


def rules(notes: C.Notes) -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([StatsNormFusion.rule(form, variance, notes)
                                   for variance in C.VARIANCES for form in C.FORMS])
