"""The shared shape of the two affine folds (``ln_scale``, ``ln_bias``).

Both match a normalization node ``N`` (LayerNormalization or RMSNormalization), optionally behind a
Transpose (the channel-first rewrite puts one there), followed by one elementwise op with a
parameter ``p`` on either side:

    z = N(x, s[, b]; axis=a) <op> p        or        z = Transpose(N(x, s[, b]; axis=a), perm) <op> p

``p`` is folded into the node only where it broadcasts as LN's parameters do (see
``_common.norm_param``), so that ``z`` keeps its shape and every element gets the same math.
"""

from __future__ import annotations

from onnxscript.rewriter import pattern

from lndeploy.passes.fuse import _common as C
from lndeploy.passes.fuse import _constants as K


class AffineFold(pattern.RewriteRuleClassBase):
    binary = ""  # "Mul" or "Add"
    rule_name = ""

    def __init__(self, norm_op: str, transposed: bool, swapped: bool, notes: C.Notes):
        variant = f"{norm_op}{',transposed' if transposed else ''}{',swapped' if swapped else ''}"
        super().__init__(f"{self.rule_name}[{variant}]")
        self.norm_op, self.transposed, self.swapped, self.notes = norm_op, transposed, swapped, notes

    def pattern(self, op, x, s, p):
        y = getattr(op, self.norm_op)(x, s, _allow_other_inputs=True, _outputs=["y"])
        if self.transposed:
            y = op.Transpose(y, _outputs=["t"])
        binary = getattr(op, self.binary)
        return binary(p, y) if self.swapped else binary(y, p)

    def check(self, context, x, s, p, y, t=None, **_):
        self.check_params(y.producer(), s)
        try:
            rank, out_axes, dims, _ = geometry(x, y, t)
            C.param_layout(p, rank, out_axes, dims)
        except C.MatchFailureError as err:
            if is_parameter(p):  # not for an activation added to the output (LSTM gates): no candidate
                self.notes.refuse(context.root, self.rule_name, err.reason)
            raise
        return True

    def check_params(self, node, s) -> None:
        raise NotImplementedError

    def rewrite(self, op, x, s, p, y, t=None, **_):
        node = y.producer()
        rank, out_axes, dims, perm = geometry(x, y, t)
        scale, bias = self.new_params(op, node, s, C.norm_param(op, self.notes, p, rank, out_axes, dims))
        inputs = [x, scale] + ([bias] if bias is not None else [])
        attrs = {k: v.value for k, v in node.attributes.items()}
        out = C.typed(getattr(op, self.norm_op)(*inputs, **attrs), x)
        return op.Transpose(out, perm=perm) if perm is not None else out

    def new_params(self, op, node, s, folded):
        raise NotImplementedError


def is_parameter(p) -> bool:
    """A weight rather than an activation: a constant, or a graph input (a scale fed at run time)."""
    return p.is_graph_input() or K.const_array(p) is not None


def bias_of(node):
    return node.inputs[2] if len(node.inputs) > 2 else None


def geometry(x, y, t):
    """(rank, output axes of the normalized dims, normalized dims, outer perm or None)."""
    node = y.producer()
    if x.shape is None:
        C.fail("the input has no shape, so a scale or bias cannot be shown to have its normalized dims "
               "(declare the input's shape to fold it)", x)
    rank = x.shape.rank()
    axis = node.attributes.get_int("axis", -1)
    first = axis + rank if axis < 0 else axis
    dims = C.norm_dims(x, range(first, rank))
    if t is None:
        return rank, list(range(first, rank)), dims, None
    perm = list(t.producer().attributes.get_ints("perm", None) or range(rank - 1, -1, -1))
    out_axes = [j for j in range(rank) if perm[j] >= first]
    if [perm[j] for j in out_axes] != list(range(first, rank)):
        C.fail(f"the Transpose {perm} reorders the normalized axes", t.producer())
    return rank, out_axes, dims, perm
