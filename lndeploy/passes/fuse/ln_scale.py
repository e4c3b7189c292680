"""Fold a scale into a normalization node that has none yet.

    z = N(x, 1[, 0]; axis=a) * p          ->   z = N(x, p'[, 0]; axis=a)
    z = T(N(x, 1[, 0]; axis=a)) * p       ->   z = T(N(x, p'[, 0]; axis=a))      T a Transpose

for N = LayerNormalization or RMSNormalization, ``p * N`` too, where the node's scale is a constant
of all ones and its bias missing or all zeros (so ``N * p`` is exactly ``N`` with scale ``p``), and
``p`` broadcasts as a scale: 1 along every non-normalized axis, 1 or the full size along each
normalized one (``p`` of shape (C, 1, 1) after a channel-first LN, (H,) or (1, 1, H) after a
trailing one). ``p'`` is ``p`` laid out in the normalized shape (a new constant, or a Reshape/Expand
of a computed ``p``). Anything else is left as it is: the normalization is still fused, the Mul stays.
"""

from __future__ import annotations

import itertools

from onnxscript.rewriter import pattern

from lndeploy.passes.fuse import _common as C
from lndeploy.passes.fuse._affine import AffineFold, bias_of

NAME = "ln_scale"


class ScaleFold(AffineFold):
    binary = "Mul"
    rule_name = NAME

    def check_params(self, node, s) -> None:
        if not C.is_all(s, 1.0):
            C.fail("the node already has a scale", node)
        if not C.is_all(bias_of(node), 0.0):
            C.fail("the node already has a bias", node)

    def new_params(self, op, node, s, folded):
        return folded, bias_of(node)


def rules(notes: C.Notes) -> pattern.RewriteRuleSet:
    variants = itertools.product(("LayerNormalization", "RMSNormalization"), (False, True), (False, True))
    return pattern.RewriteRuleSet([ScaleFold.rule(n, t, s, notes) for n, t, s in variants])
