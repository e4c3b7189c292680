"""``lndeploy fuse``: LayerNorm written as primitive ops -> one node (README "Repairing ONNX files").

Rules, applied in this order (and the whole order again while any fired, up to ROUNDS times), each
one module with its formula in its docstring:

1. ``layer_norm``: mean / variance / eps / root over trailing axes -> ``LayerNormalization``
2. ``channel_first_layer_norm``: the same over other axes -> Transpose, LayerNormalization, Transpose
3. ``tf_layer_norm``: ``x * inv + (beta - mean * inv)``, ``inv = gamma * rsqrt(var + eps)`` -> LN
4. ``rms_norm``: ``x / sqrt(mean(x**2) + eps)`` -> ``RMSNormalization`` (opset >= 23 only)
5. ``no_op_cast``: ``Cast(N(x), to=N's own type)`` -> ``N(x)``
6. ``ln_scale``: ``N(x) * scale`` -> N with that scale
7. ``ln_bias``: ``LN(x) + bias`` -> LN with that bias
8. ``unflatten_layer_norm``: ``Reshape(LN(Flatten(x, f)), Shape(x))`` -> ``LN(x; axis=f - rank)``
9. ``ln_stats_outputs``: a mean / inverse std of LN's input still computed beside it -> LN's Mean /
   InvStdDev outputs

Shape inference runs first (torch's legacy exporter writes no value_info, and ranks are needed).
A model below opset 17 is converted to 17 (LayerNormalization's first opset) when it has a
ReduceMean, ReduceSum or Flatten to look at; if nothing is fused, the input is returned unchanged. ``to="plugin"`` then
turns every LayerNormalization into lndeploy's plugin node (:mod:`lndeploy.passes.ln_to_plugin`).
With ``verify`` the input and the result run on the same random inputs (by ``open_session``, default
ONNX Runtime with optimisations off for both) and a change beyond 1e-5 + 1e-5 * |expected| (fp32)
raises ParityError before anything is written.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field

from lndeploy.errors import BadInputError
from lndeploy.plugin_spec import MIN_OPSET

RULE_ORDER = ("layer_norm", "channel_first_layer_norm", "tf_layer_norm", "rms_norm", "no_op_cast", "ln_scale",
              "ln_bias", "unflatten_layer_norm", "ln_stats_outputs")
LN_OPS = {"LayerNormalization", "RMSNormalization", "lndeploy.LndeployLayerNorm"}
ROUNDS = 3  # the rules in RULE_ORDER, again while any fired


@dataclass
class FuseResult:
    """What fuse did. ``model`` is the rewritten ModelProto; ``to_dict()`` is the JSON report."""

    model: object
    input: str | None
    output: str | None
    to: str
    opset_before: int
    opset_after: int
    counts: dict
    ops_before: dict
    ops_after: dict
    unconverted: list = field(default_factory=list)  # {"node", "rule", "reason"}
    notes: list = field(default_factory=list)
    verification: dict | None = None

    @property
    def ln_nodes(self) -> int:
        return sum(n for op, n in self.ops_after.items() if op in LN_OPS)

    def to_dict(self) -> dict:
        ln_before = sum(n for op, n in self.ops_before.items() if op in LN_OPS)
        return {
            "input": self.input, "output": self.output, "to": self.to,
            "opset": {"before": self.opset_before, "after": self.opset_after},
            "rules": dict(self.counts),
            "ln_nodes": {"before": ln_before, "after": self.ln_nodes},
            "ops_before": dict(self.ops_before), "ops_after": dict(self.ops_after),
            "unconverted": list(self.unconverted), "notes": list(self.notes),
            "verification": self.verification,
        }


def fuse(input, output=None, *, to: str = "native", verify: bool = True, report=None,
         opset: int | None = None, open_session=None) -> FuseResult:
    """Rewrite primitive-op LayerNorm (and RMS norm) in ``input`` (a path or a ModelProto).

    Writes ``output`` (atomically) and the JSON ``report`` when given, both only after verification
    passed. Raises BadInputError for an unreadable model or a bad option, ParityError when the
    rewrite changes an output. ``open_session(model)`` opens what runs both models for the
    verification (``.run(feed) -> {name: array}``; ``.close()`` or a context manager); both must be
    opened alike (same runtime, same optimisation level). ``lndeploy.fuse`` (``lndeploy.pipeline``)
    passes ONNX Runtime with optimisations off; required when ``verify``.
    """
    from lndeploy.fileio import write_json_atomic
    from lndeploy.onnxfile import opset_version, save_model

    if to not in ("native", "plugin"):
        raise BadInputError(f"--to must be 'native' or 'plugin', got {to!r}")
    from lndeploy.outpaths import prepare_outputs

    # before the work, not after it; -o onto IN.onnx itself is allowed (an atomic in-place rewrite)
    prepare_outputs({"-o": output, "--report": report}, {"IN.onnx": input}, in_place=(("-o", "IN.onnx"),))
    notes: list[str] = []
    source, name = _load(input, notes)
    before = opset_version(source)
    _check_opset(opset, before)
    model, counts, unconverted = _rewrite(source, opset, notes)
    if to == "plugin":
        model = _to_plugin(model, counts, unconverted)
    result = FuseResult(model, name, os.fspath(output) if output is not None else None, to, before,
                        opset_version(model), counts, histogram(source), histogram(model), unconverted, notes)
    if verify:
        from lndeploy.passes.fuse import _verify

        if open_session is None:
            raise TypeError("verification needs open_session (lndeploy.fuse passes ONNX Runtime), or verify=False")
        result.verification = _verify.compare(source, model, open_session)
    if output is not None:
        save_model(model, output)
    if report is not None:
        write_json_atomic(report, result.to_dict())
    return result


def _load(input, notes: list):
    import onnx

    if isinstance(input, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(input)
        return copy, None
    if isinstance(input, (str, os.PathLike)):
        from lndeploy.onnxfile import load_model

        return load_model(input, notes=notes), os.fspath(input)
    raise BadInputError(f"fuse takes an ONNX file path or a ModelProto, got {type(input).__name__}")


def _check_opset(opset: int | None, before: int) -> None:
    if opset is None:
        return
    if opset < MIN_OPSET:
        raise BadInputError(f"--opset {opset}: LayerNormalization needs opset >= {MIN_OPSET}")
    if opset < before:
        raise BadInputError(f"--opset {opset} is below the model's opset {before}; fuse does not lower opsets")


def _rewrite(source, opset: int | None, notes: list) -> tuple[object, dict, list]:
    """Run the rules; the input comes back untouched when none fired and no opset was asked for."""
    import onnx_ir as ir
    from onnx_ir.passes.common import RemoveUnusedNodesPass

    from lndeploy.passes.fuse import _common, _prepare, _unmatched

    counts = dict.fromkeys(RULE_ORDER, 0)
    # an LN below opset 17 (as ONNX Runtime's optimizer writes it) is kept, at opset 17
    raise_opset = opset is not None or _prepare.layer_norm_below_opset_17(source)
    # every rule starts from a reduction, or (unflatten) from the Flatten of ONNX's function body
    if not raise_opset and not _prepare.has_op(source, "ReduceMean", "ReduceSum", "Flatten"):
        return source, counts, []
    ours = len(notes)  # notes before this are about the source itself (load_model's sorting)
    work = _prepare.prepare(source, opset, notes)
    model = ir.serde.deserialize_model(work)
    identities = _prepare.drop_identities(model)
    refusals = _common.Notes()
    rule_sets = [(name, module.rules(refusals)) for name, module in zip(RULE_ORDER, _prepare.rule_modules())]
    for _ in range(ROUNDS):  # a later rule can make an earlier one's case (a scale folded before a Cast)
        fired = 0
        for rule_name, rule_set in rule_sets:
            applied = rule_set.apply_to_model(model)
            counts[rule_name] += applied
            fired += applied
        if not fired:
            break
    if not any(counts.values()) and not raise_opset:
        del notes[ours:]  # about the working copy, which is dropped
        return source, counts, refusals.left() + _unmatched.unmatched(model, refusals.roots())
    RemoveUnusedNodesPass()(model)  # the eps/exponent Constant nodes the matches left behind
    if identities:
        notes.append(f"removed {identities} Identity node(s) first (an Identity between the ops of a "
                     "LayerNorm hides it from the rules)")
    left = refusals.left() + _unmatched.unmatched(model, refusals.roots())
    return ir.serde.serialize_model(model), counts, left


def _to_plugin(model, counts: dict, unconverted: list):
    from lndeploy.passes import ln_to_plugin

    model, plugin_report = ln_to_plugin.rewrite(model)
    counts["to_plugin"] = plugin_report.rewritten
    unconverted.extend({"node": node, "rule": "to_plugin", "reason": reason}
                       for node, reason in plugin_report.skipped)
    return model


def histogram(model) -> dict:
    """op -> count over the graph and its subgraphs; ops outside the default domain as domain.op."""
    from lndeploy.plugin_spec import iter_graphs

    counter = collections.Counter(
        f"{n.domain}.{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
        for g in iter_graphs(model.graph) for n in g.node)
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


__all__ = ["fuse", "FuseResult", "RULE_ORDER", "histogram"]
