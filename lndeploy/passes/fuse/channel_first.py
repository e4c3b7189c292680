"""LayerNorm over non-trailing axes (ConvNeXt's channel-first LN over axis 1 of NCHW) -> Transpose,
one ``LayerNormalization`` over the trailing axes, Transpose back.

    mean = ReduceMean(x, axes)                       axes not the trailing ones, e.g. [1] of NCHW
    d    = x - mean
    y    = d / sqrt(ReduceMean(d ** 2, axes) + eps)  (every spelling the layer_norm rule accepts)
  ->
    P    = [axes not normalized, in order] + [normalized axes, in order]     e.g. [0, 2, 3, 1]
    y    = Transpose(LayerNormalization(Transpose(x, P), ones; axis=-len(axes), epsilon=eps), P^-1)

TensorRT and ONNX Runtime recognise a normalization only over trailing axes; a transpose on either
side is what lets them. The per-channel ``weight[:, None, None] * y + bias[:, None, None]`` that
follows is folded into the LN by the ``ln_scale`` and ``ln_bias`` rules, which see through the
outer Transpose. The same checks as the layer_norm rule apply.
"""

from __future__ import annotations

import numpy as np
from onnxscript.rewriter import pattern

from lndeploy.passes.fuse import _common as C
from lndeploy.passes.fuse import _stats as S
from lndeploy.passes.fuse.layer_norm import StatsNormFusion

NAME = "channel_first_layer_norm"


class ChannelFirstFusion(StatsNormFusion):
    rule_name = NAME

    def check_axes(self, x, axes) -> None:
        if C.is_trailing(axes, C.known_rank(x)):
            raise C.NotOurs("the axes are trailing: the layer_norm rule's case")
        C.rank_of(x)  # the Transpose's perm needs the rank: refused (with that reason) where it is unknown

    def rewrite(self, op, x, eps, mean, var, num, **_):
        rank = C.rank_of(x)
        axes = S.stats_axes(x, mean, var)
        epsilon = C.epsilon_of(eps, rank)
        perm = [a for a in range(rank) if a not in axes] + list(axes)
        moved = C.typed(op.Transpose(x, perm=perm), x, perm)
        scale = self.scale(op, x, axes, num)
        y = C.typed(op.LayerNormalization(moved, scale, axis=-len(axes), epsilon=epsilon, stash_type=1), moved)
        return op.Transpose(y, perm=[int(i) for i in np.argsort(perm)])


def rules(notes: C.Notes) -> pattern.RewriteRuleSet:
    return pattern.RewriteRuleSet([ChannelFirstFusion.rule(form, variance, notes)
                                   for variance in S.VARIANCES for form in C.FORMS])
