"""TensorFlow's batch-norm form of LayerNorm -> one ``LayerNormalization``.

Keras' LayerNormalization computes ``tf.nn.moments`` and then ``tf.nn.batch_normalization`` (Keras 3:
the same algebra written out); tf2onnx writes it as

    mean  = mean(x, axes)                            any spelling of ``_stats.mean_of``
    var   = mean((x - m) ** 2, axes)                 tf.nn.moments' squared_difference (m the same
          | mean(x ** 2, axes) - mean ** 2           mean or a second one), or E[x^2] - E[x]^2
    inv   = rsqrt(var + eps) * gamma                 rsqrt: Reciprocal(Sqrt) | Pow(., -0.5) | Div(1, Sqrt);
                                                     gamma on either side, or none (scale=False)
    y     = x * inv + shift                          shift = beta - mean * inv      (tf.nn.batch_normalization)
                                                           | -mean * inv + beta     (Keras 3)
                                                           | -(mean * inv), -mean * inv   (center=False)
  ->
    y     = LayerNormalization(x, gamma', beta'; axis=-k, epsilon=eps, stash_type=1)

since x * inv - mean * inv = (x - mean) * gamma / sqrt(var + eps). Every Mul and Add either way round.
Over non-trailing axes the LN sits between two Transposes, as in the channel-first rule. gamma and
beta must broadcast as LN's scale and bias (1 along every non-normalized axis, 1 or the full size
along each normalized one); ``gamma'``/``beta'`` are them laid out in the normalized shape. The
statistics are checked as in the layer_norm rule (same axes, biased variance, eps a scalar constant
before the root, static normalized dims). The fused node subtracts the mean before scaling, so it
is the more accurate of the two where |mean| >> std; fuse's ONNX Runtime check still bounds the change.
"""

from __future__ import annotations

import numpy as np
from onnxscript.rewriter import pattern

from lndeploy.passes.fuse import _common as C
from lndeploy.passes.fuse import _stats as S

NAME = "tf_layer_norm"
KINDS = ("separate", "moments")


class BatchNormFormFusion(pattern.RewriteRuleClassBase):
    def __init__(self, variance: str, swapped: bool, notes: C.Notes):
        # remove_nodes=False: as in the layer_norm rule, statistics used elsewhere stay for those uses
        super().__init__(f"{NAME}[{variance}{',swapped' if swapped else ''}]", remove_nodes=False)
        self.variance, self.swapped, self.notes = variance, swapped, notes

    def pattern(self, op, x, eps, gamma, beta, p2, p2_mean, half, minus_half, one):
        mean = S.mean_of(op, x, name="mean")
        var = S.variance(op, self.variance, x, None, mean, p2, p2_mean)
        r = C.inverse_root(op, var, eps, half, minus_half, one)
        inv = pattern.OrValue([op.Mul(r, gamma), op.Mul(gamma, r), r], name="inv")
        scaled = either(op, x, inv)
        shift = pattern.OrValue([op.Sub(beta, either(op, mean, inv)), op.Neg(either(op, mean, inv)),
                                 op.Add(either(op, op.Neg(mean), inv), beta),
                                 op.Add(beta, either(op, op.Neg(mean), inv)), either(op, op.Neg(mean), inv)])
        return op.Add(shift, scaled) if self.swapped else op.Add(scaled, shift)

    def check(self, context, x, eps, mean, var, gamma=None, beta=None, p2=None, p2_mean=None, half=None,
              minus_half=None, one=None, var_centre=None, **_):
        try:
            C.float_dtype(x)
            C.check_exponents(p2, half, minus_half, one, p2_mean)
            axes = S.stats_axes(x, mean, var, var_centre)
            rank = C.rank_of(x)
            C.epsilon_of(eps, rank)
            dims = C.norm_dims(x, axes)
            for param in (gamma, beta):
                if param is not None:
                    C.param_layout(param, rank, axes, dims)
        except C.MatchFailureError as err:
            self.notes.refuse(context.root, NAME, err.reason)
            raise
        return True

    def rewrite(self, op, x, eps, mean, var, gamma=None, beta=None, **_):
        rank = C.rank_of(x)
        axes = S.stats_axes(x, mean, var)
        dims = C.norm_dims(x, axes)
        scale = (C.norm_param(op, self.notes, gamma, rank, axes, dims) if gamma is not None
                 else C.ones(op, self.notes, x, axes))
        params = [scale] + ([C.norm_param(op, self.notes, beta, rank, axes, dims)] if beta is not None else [])
        epsilon = C.epsilon_of(eps, rank)
        if C.is_trailing(axes, rank):
            return op.LayerNormalization(x, *params, axis=-len(axes), epsilon=epsilon, stash_type=1)
        # the normalized axes keep their order at the end, so the params' layout (dims) still fits
        perm = [a for a in range(rank) if a not in axes] + list(axes)
        moved = C.typed(op.Transpose(x, perm=perm), x, perm)
        y = C.typed(op.LayerNormalization(moved, *params, axis=-len(axes), epsilon=epsilon, stash_type=1), moved)
        return op.Transpose(y, perm=[int(i) for i in np.argsort(perm)])


def either(op, a, b):
    """``a * b`` or ``b * a`` (fresh pattern nodes at each use)."""
    return pattern.OrValue([op.Mul(a, b), op.Mul(b, a)])


def rules(notes: C.Notes) -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([BatchNormFormFusion.rule(kind, swapped, notes)
                                   for kind in KINDS for swapped in (False, True)])
