"""LN spellings no rule knows (docs/fuse.md, "Exact LN spellings not recognised yet") are left as they
are, but no longer silently: the centring ``x - mean(x)`` they keep gets a note. A refusal already
noted is not noted twice, and a fused LN whose statistics stay computed for other uses gets none."""

import numpy as np
import pytest

from lndeploy.passes.fuse import _testing as T
from lndeploy.passes.fuse._unmatched import REASON
from lndeploy.pipeline import fuse

EPS = 1e-5


def neg_numerator(g, x):
    """y = -(x - mean) / sqrt(var + eps): the negation written with Neg."""
    d = g.op("Sub", x, g.reduce_mean(x, [-1]))
    plus_eps = g.op("Add", g.reduce_mean(T.square(g, d), [-1]), g.const(EPS))
    return g.op("Div", g.op("Neg", d), g.op("Sqrt", plus_eps))


def reshape_put_back(g, x):
    """The mean with keepdims=0, put back by a Reshape to [16, 1] rather than an Unsqueeze."""
    mean = g.op("Reshape", g.reduce_mean(x, [-1], keepdims=0), g.const([16, 1], np.int64))
    d = g.op("Sub", x, mean)
    plus_eps = g.op("Add", g.reduce_mean(T.square(g, d), [-1]), g.const(EPS))
    return g.op("Div", d, g.op("Sqrt", plus_eps))


def unsqueeze_after_eps(g, x):
    """The variance with keepdims=0 and the Unsqueeze after Add(eps)."""
    d = g.op("Sub", x, g.reduce_mean(x, [-1]))
    plus_eps = g.op("Add", g.reduce_mean(T.square(g, d), [-1], keepdims=0), g.const(EPS))
    return g.op("Div", d, g.unsqueeze(g.op("Sqrt", plus_eps), [-1]))


@pytest.mark.parametrize("build", [neg_numerator, reshape_put_back, unsqueeze_after_eps])
def test_an_unknown_spelling_is_left_with_a_note(build):
    T.assert_near_miss_untouched(build, REASON, opset=18)


def test_a_refused_candidate_is_noted_once():
    """eps a graph input: the layer_norm rule's own reason, and no second note for its centring."""
    T.assert_near_miss_untouched(lambda g, x: T.layer_norm(g, x, [-1], eps=g.input("eps", [])),
                                 "epsilon is not a constant", opset=18)


def test_statistics_kept_beside_a_fused_layer_norm_get_no_note():
    """The variance of x - mean is also a graph output: the LN fuses, its inputs stay computed."""
    g = T.Graph(18)
    x = g.input("x", [4, 16])
    d = g.op("Sub", x, g.reduce_mean(x, [-1]))
    var = g.reduce_mean(T.square(g, d), [-1])
    y = g.op("Div", d, g.op("Sqrt", g.op("Add", var, g.const(EPS))))
    result = fuse(g.model(y, var))
    assert T.ops(result.model)["LayerNormalization"] == 1 and "Sub" in T.ops(result.model)
    assert result.unconverted == []


def test_a_centring_that_is_no_layer_norm_is_noted_too():
    """x - mean(x) alone (mean-centring): reported, as the start of an LN spelling not recognised;
    the note says what is there, not that it is wrong."""
    T.assert_near_miss_untouched(lambda g, x: g.op("Sub", x, g.reduce_mean(x, [-1])), REASON, opset=18)
