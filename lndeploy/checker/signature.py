"""Pair the model's inputs with an artifact's before anything runs.

An artifact given with ``--onnx`` may come from another exporter: torch's legacy exporter names
inputs ``input.1`` or ``onnx::Mul_0`` unless told otherwise, fixes every dim it was not told is
dynamic, and pairs names with forward's parameters in the order given. So:

* names match: paired by name; every artifact name unknown to the model and as many inputs as the
  model has: paired by position, in forward's parameter order (noted); anything else is bad input
  naming both lists;
* each pair must agree on dtype, rank and every fixed dim: else bad input naming the input (running
  would end in Polygraphy's own input check, an internal error to the user);
* a dim the model declares dynamic but the artifact fixes is checked at the artifact's size only
  (noted), rather than fed sizes the artifact cannot take.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lndeploy import inputs as gen
from lndeploy.errors import BadInputError


@dataclass
class Pairing:
    names: dict  # model input name -> artifact input name, for the inputs the artifact takes
    pinned: dict = field(default_factory=dict)  # dynamic dim label -> the size the artifact fixes
    # artifact input declared without a shape -> the rank the model's example gives it
    ranks: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def pair_inputs(spec, artifact_inputs) -> Pairing:
    """``artifact_inputs``: the artifact's ``TensorMeta`` (name, dtype, shape with ints for fixed dims)."""
    ours = gen.specs_from_examples(spec.inputs, spec.dynamic_axes)
    by_name = {s.name: s for s in ours}
    theirs = list(artifact_inputs)
    names = [m.name for m in theirs]
    pairing = Pairing({})
    if all(n in by_name for n in names):
        pairs = [(by_name[m.name], m) for m in theirs]
    elif not any(n in by_name for n in names) and len(theirs) == len(ours):
        ours = _forward_order(spec, ours)
        pairs = list(zip(ours, theirs))
        pairing.notes.append(f"the artifact's inputs {names} have other names than the model's "
                             f"{[s.name for s in ours]}: paired by position")
    else:
        raise BadInputError(f"the artifact's inputs {names} do not match the model's inputs "
                            f"{[s.name for s in ours]} (by name or, all renamed, by position)")
    for model_input, meta in pairs:
        _compare(model_input, meta, pairing)
        pairing.names[model_input.name] = meta.name
    for label, size in pairing.pinned.items():
        pairing.notes.append(f"the artifact fixes dim {label!r} to {size}, which the model declares dynamic: "
                             f"checked at that size only")
    return pairing


def _forward_order(spec, ours: list) -> list:
    """Inputs given as a dict are keyword arguments, in any order; an exporter called positionally
    (the only way the legacy exporter takes them) follows forward's parameter order."""
    import inspect

    if not spec.as_kwargs:
        return ours
    params = list(inspect.signature(spec.module.forward).parameters)
    return sorted(ours, key=lambda s: params.index(s.name) if s.name in params else len(params))


def _compare(model_input, meta, pairing: Pairing) -> None:
    where = f"artifact input {meta.name!r}" + (f" (model input {model_input.name!r})"
                                                if meta.name != model_input.name else "")
    if model_input.dtype != meta.dtype:
        raise BadInputError(f"{where} is {meta.dtype}, the model's example is {model_input.dtype}")
    if meta.shape is None:  # declared without a shape: takes any rank, so the model's
        pairing.ranks[meta.name] = len(model_input.shape)
        return
    if len(model_input.shape) != len(meta.shape):
        raise BadInputError(f"{where} has rank {len(meta.shape)} {_shape(meta.shape)}, the model's example "
                            f"has rank {len(model_input.shape)} {_shape(model_input.shape)}")
    for index, (ours, theirs) in enumerate(zip(model_input.shape, meta.shape)):
        if not isinstance(theirs, int):
            continue  # dynamic in the artifact: takes whatever the model takes
        if isinstance(ours, int):
            if ours != theirs:
                raise BadInputError(f"{where} has dim {index} = {theirs}, the model's example has {ours} "
                                    f"{_shape(model_input.shape)}")
        elif pairing.pinned.setdefault(ours, theirs) != theirs:
            raise BadInputError(f"the artifact fixes dim {ours!r} to both {pairing.pinned[ours]} and {theirs}")


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
