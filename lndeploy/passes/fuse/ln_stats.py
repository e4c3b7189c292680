"""Statistics still computed beside a LayerNormalization -> its optional Mean and InvStdDev outputs.

    m   = mean(t, A)                        [Reshape(m, R)]                 ->  LN.Mean
    inv = 1 / sqrt(var(t, A) + eps)         [Reshape(inv, R)]               ->  LN.InvStdDev

where ``LN = LayerNormalization(x; axis=a, epsilon=eps, stash_type=1)`` is in the graph and either
``t = x`` with A = the axes LN normalizes (a..rank-1), or ``t = Cast?(Flatten(x, axis=a))`` with
A = [1] (ONNX's own function body, what its ``*_expanded`` node tests hold: the statistics are taken
over the flattened X and reshaped to X's rank). ``var`` is any variance spelling the layer_norm rule
reads (``_stats.variance``), the inverse root any of ``Reciprocal(sqrt)``, ``Pow(., -0.5)``,
``Div(1, sqrt)``. By LN's definition (ONNX opset 17) Mean and InvStdDev have x's dims with the
normalized ones set to 1, in the stash type (float): so the match must be float32, eps must be LN's
own, and a Reshape must give exactly that shape (dims compared as ints or symbolic names).

The layer_norm rule keeps these statistics computed for their other uses (``remove_nodes=False``);
this rule runs last, after the affine folds and ``unflatten_layer_norm`` have given LN its final
form. It works in three steps: LN nodes whose input has a reduction beside them get their two
optional outputs, the statistics are replaced by those outputs, and the outputs left unused are
dropped again (the node goes back to one output).
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import pattern

from lndeploy.passes.fuse import _common as C
from lndeploy.passes.fuse import _constants as K
from lndeploy.passes.fuse import _stats as S

NAME = "ln_stats_outputs"
INVERSES = ("reciprocal", "pow", "div_one")


class StatsOutput(pattern.RewriteRuleClassBase):
    """One statistic (``which`` = "mean" or "inv_std") in one spelling, optionally reshaped."""

    def __init__(self, which: str, reshaped: bool, variance: str = "", inverse: str = ""):
        super().__init__(f"{NAME}[{which},{variance},{inverse},{'reshaped' if reshaped else 'kept'}]",
                         remove_nodes=False)
        self.which, self.reshaped, self.variance, self.inverse = which, reshaped, variance, inverse

    def pattern(self, op, t, eps, p2, p2_mean, half, minus_half, one):
        if self.which == "mean":
            stat = (S.mean_of(op, t, name="mean") if self.reshaped
                    else op.ReduceMean(t, _allow_other_inputs=True, _outputs=["mean"]))
        else:
            mean = S.mean_of(op, t, name="mean")
            num = S.centred(op, t, mean, name="num")
            var = S.variance(op, self.variance, t, num, mean, p2, p2_mean)
            plus_eps = pattern.OrValue([op.Add(var, eps), op.Add(eps, var)])
            root = pattern.OrValue([op.Sqrt(plus_eps), op.Pow(plus_eps, half)])
            stat = {"reciprocal": lambda: op.Reciprocal(root), "pow": lambda: op.Pow(plus_eps, minus_half),
                    "div_one": lambda: op.Div(one, root)}[self.inverse]()
        return op.Reshape(stat, pattern.ANY_VALUE, _outputs=["shaped"]) if self.reshaped else stat

    def check(self, context, t, mean=None, eps=None, var=None, var_centre=None, p2=None, p2_mean=None, half=None,
              minus_half=None, one=None, shaped=None, num=None, **_):
        stat = shaped if shaped is not None else context.root.outputs[0]
        mean = mean if mean is not None else _mean_in(num, t)
        if not stat.uses() and not stat.is_graph_output():
            C.fail("the statistic is no longer used (a reshaped form of it was mapped already)")
        if stat.dtype != ir.DataType.FLOAT:
            C.fail("the statistic is not float32, the type of LN's Mean and InvStdDev")
        C.check_exponents(p2, half, minus_half, one, p2_mean)
        axes = S.stats_axes(t, mean, var, var_centre) if var is not None else S.mean_axes(mean, t)
        ln = _owner(t, axes)
        if eps is not None and C.epsilon_of(eps, C.rank_of(t)) != ln.attributes.get_float("epsilon", 1e-5):
            C.fail("the statistic's epsilon is not the LayerNormalization's")
        if not _same_dims(stat, _stat_dims(ln)):
            C.fail("the statistic is not of the shape of LN's Mean/InvStdDev")
        return True

    def rewrite(self, op, t, mean=None, var=None, num=None, **_):
        mean = mean if mean is not None else _mean_in(num, t)
        axes = S.stats_axes(t, mean, var) if var is not None else S.mean_axes(mean, t)
        return _owner(t, axes).outputs[1 if self.which == "mean" else 2]


def _mean_in(num, t):
    """The mean in ``num = t - mean`` (or ``mean - t``): onnxscript binds a named value nested in
    another named one only at the outer name."""
    if num is None:
        C.fail("no mean bound")
    a, b = num.producer().inputs[:2]
    return b if a is t else a


def _owner(t, axes):
    """The 3-output LayerNormalization whose statistics these are, or refused."""
    for x, want in _normalized(t, axes):
        for use in x.uses():
            node = use.node
            if (node.op_type == "LayerNormalization" and node.domain in ("", "ai.onnx") and use.idx == 0
                    and len(node.outputs) == 3 and node.attributes.get_int("stash_type", 1) == 1
                    and _first_axis(node) == want):
                return node
    C.fail("no LayerNormalization over the same axes of the same input")


def _normalized(t, axes):
    """(x, first normalized axis of x) pairs a statistic of ``t`` over ``axes`` could belong to."""
    rank = C.rank_of(t)
    if tuple(axes) == tuple(range(axes[0], rank)):
        yield t, axes[0]
    node = t.producer()
    if node is not None and node.op_type == "Cast" and node.inputs[0].dtype == t.dtype:
        node = node.inputs[0].producer()
    if node is not None and node.op_type == "Flatten" and tuple(axes) == (1,) and rank == 2:
        x = node.inputs[0]
        axis = node.attributes.get_int("axis", 1)
        yield x, axis + C.rank_of(x) if axis < 0 else axis


def _first_axis(ln) -> int | None:
    x = ln.inputs[0]
    if x.shape is None:
        return None
    axis = ln.attributes.get_int("axis", -1)
    return axis + x.shape.rank() if axis < 0 else axis


def _stat_dims(ln) -> list:
    x, first = ln.inputs[0], _first_axis(ln)
    return [K.dim_of(d) for d in list(x.shape)[:first]] + [1] * (x.shape.rank() - first)


def _same_dims(value, dims) -> bool:
    if value.shape is None:
        return False
    have = [K.dim_of(d) for d in value.shape]
    return len(have) == len(dims) and all(h is not None and h == d for h, d in zip(have, dims))


class StatsOutputs:
    """The three steps (see the module docstring), with ``apply_to_model`` like a rule set."""

    def __init__(self, notes: C.Notes):
        self.notes = notes
        # the inverse std first: its variance pattern reads the mean, which the mean rule replaces;
        # the reshaped statistic before the bare one, so that the Reshape goes too
        self.rule_sets = [_without_cleanup([StatsOutput.rule("inv_std", r, v, i)
                                            for v in S.VARIANCES for i in INVERSES]) for r in (True, False)]
        self.rule_sets += [_without_cleanup([StatsOutput.rule("mean", r)]) for r in (True, False)]

    def apply_to_model(self, model) -> int:
        widened = [_with_outputs(node, 3) for node in list(model.graph.all_nodes()) if _has_stats_beside(node)]
        if not widened:
            return 0
        names = [v.name for v in model.graph.outputs]
        count = 0
        for rules in self.rule_sets:
            count += rules.apply_to_model(model)
            _drop_dead_nodes(model)  # what a mapped statistic leaves must not be matched by the next set
        _keep_output_names(model.graph, names)
        for node in widened:
            if not any(out.uses() or out.is_graph_output() for out in node.outputs[1:]):
                _with_outputs(node, 1)
        for graph in {node.graph for node in model.graph.all_nodes()} | {model.graph}:
            if graph is not None:
                graph.sort()  # a statistic used before the LN in the file's order now comes from it
        return count


def _drop_dead_nodes(model) -> None:
    """Remove nodes none of whose outputs is used, leaving every output of the nodes that stay."""
    for graph in {node.graph for node in model.graph.all_nodes()} | {model.graph}:
        if graph is None:
            continue
        for node in reversed(list(graph)):
            if not any(out.uses() or out.is_graph_output() for out in node.outputs):
                graph.remove(node, safe=True)


def _keep_output_names(graph, names: list) -> None:
    """Graph outputs keep their names (``Mean``, ``InvStdDev``): the rewriter's name fixing may hand
    the name to the value it replaced, which is dead now; that one is renamed instead."""
    values = {v.name: v for node in graph for v in node.outputs if v.name}
    for value, name in zip(graph.outputs, names):
        if value.name != name:
            if name in values and values[name] is not value:
                values[name].name = f"{name}_replaced"
            value.name = name


def _without_cleanup(rules) -> pattern.RewriteRuleSet:
    """A rule set that does not run onnxscript's unused-node cleanup after it: that cleanup also
    drops optional outputs nothing uses yet, the very ones the next rule set maps statistics to."""
    rule_set = pattern.RewriteRuleSet(rules)
    rule_set.remove_unused_nodes = False
    return rule_set


def _has_stats_beside(node) -> bool:
    """A one-output float LN with a reduction of its input, or of a Flatten of it, beside it."""
    if node.op_type != "LayerNormalization" or node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
        return False
    x = node.inputs[0]
    if x.dtype != ir.DataType.FLOAT or node.attributes.get_int("stash_type", 1) != 1:
        return False
    candidates = [x] + [u.node.outputs[0] for u in x.uses() if u.node.op_type == "Flatten"]
    candidates += [u.node.outputs[0] for c in list(candidates) for u in c.uses() if u.node.op_type == "Cast"]
    return any(u.node.op_type in ("ReduceMean", "ReduceSum") for c in candidates for u in c.uses())


def _with_outputs(node, count: int):
    """Replace ``node`` by the same node with ``count`` outputs (Y keeps its value's name and uses)."""
    new = ir.Node(node.domain, node.op_type, list(node.inputs), attributes=list(node.attributes.values()),
                  num_outputs=count, name=node.name)
    kept = min(count, len(node.outputs))
    for old, fresh in zip(node.outputs[:kept], new.outputs):
        fresh.type, fresh.shape = old.type, old.shape
    for fresh in new.outputs[kept:]:
        fresh.type = ir.TensorType(ir.DataType.FLOAT)
    ir.convenience.replace_nodes_and_values(node.graph, node, [node], [new], list(node.outputs[:kept]),
                                            list(new.outputs[:kept]))
    return new


def rules(notes: C.Notes) -> StatsOutputs:
    return StatsOutputs(notes)

