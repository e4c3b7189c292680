"""Fold a bias into a LayerNormalization that has none yet.

    z = LayerNormalization(x, s[, 0]; axis=a) + p        ->   z = LayerNormalization(x, s, p'; axis=a)
    z = T(LayerNormalization(x, s[, 0]; axis=a)) + p     ->   z = T(LayerNormalization(x, s, p'; axis=a))

(``p + N`` too; T a Transpose) where the node's bias is missing or a constant of all zeros and ``p``
broadcasts as a bias: 1 along every non-normalized axis, 1 or the full size along each normalized
one. ``p'`` is ``p`` laid out in the normalized shape. RMSNormalization has no bias input: an Add
after it stays.
"""

from __future__ import annotations

import itertools

from onnxscript.rewriter import pattern

from lndeploy.passes.fuse import _common as C
from lndeploy.passes.fuse._affine import AffineFold, bias_of

NAME = "ln_bias"


class BiasFold(AffineFold):
    binary = "Add"
    rule_name = NAME

    def check_params(self, node, s) -> None:
        if not C.is_all(bias_of(node), 0.0):
            C.fail("the node already has a bias", node)

    def new_params(self, op, node, s, folded):
        return s, folded


def rules(notes: C.Notes) -> pattern.RewriteRuleSet:
    variants = itertools.product((False, True), (False, True))
    return pattern.RewriteRuleSet([BiasFold.rule("LayerNormalization", t, s, notes) for t, s in variants])
