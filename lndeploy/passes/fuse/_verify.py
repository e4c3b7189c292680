"""Check a fused model against its input: both run on the same inputs, by what the caller passes in.

``open_session(model)`` opens something that runs a graph (``.run(feed) -> {name: array}``, and
``.close()`` or a context manager); this module imports no backend (passes come before backends,
README "Layers"). Both models must be opened the same way: the same runtime at the same graph
optimisation level, or the comparison measures the runtime's own rewrites (ONNX Runtime fuses a
primitive-op LayerNorm itself when optimising) instead of fuse's (docs/fuse.md, "--verify").

Inputs come from :mod:`lndeploy.inputs` (seeded normal floats). Dynamic dims all take one small size;
sizes are tried in order until the input model runs at two of them: a graph exported with a loop
unrolled to a fixed length declares its sequence dim dynamic but runs only from that length on. A
graph input declared without a shape gets a guessed rank (3, 2, 4, then 1; both models are opened
with that rank declared), each dim that size.
After the random samples, one more feeds the last of them with its first row (along the last axis)
made constant and its second row zero: where a rewrite divides by a vanishing variance without the
original's epsilon, that is where it shows.

The comparison is :func:`lndeploy.parity.compare_arrays` under the parity table's "rewrite"
tolerance of each output's dtype (fp32/fp64: abs 1e-5 or rel 1e-5; an element passes on either), so
outputs in the hundreds are held to their own float precision, not to an absolute 1e-5.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np

from lndeploy.errors import BadInputError, LndeployError, ParityError, first_line

SIZES = (2, 3, 8, 16, 64)
GUESSED_RANKS = (3, 2, 4, 1)
SAMPLES = 2
# the constant row's value: its mean is exact in every float type (0.5 * n / n), so the exact LN of
# that row, 0, is what both sides compute, rather than rounding noise divided by sqrt(eps)
CONSTANT_ROW = 0.5
# the float output dtypes gated (by lndeploy.parity's "rewrite" tolerances: fp16/bf16 graphs compute the
# fused LN's statistics in fp32, stash_type=1, where the primitive ops did not, so they move more)
GATED = ("float32", "float64", "float16", "bfloat16")


def compare(before, after, open_session, *, seed: int = 0) -> dict:
    """Raise ParityError if any output of ``after`` differs from ``before``'s beyond its tolerance."""
    if after == before:  # nothing fused: the input goes back as it was, nothing to run (or to refuse)
        return {"passed": True, "backend": None, "provider": None, "unchanged": True,
                "tolerance": _tolerance_dict(GATED), "samples": []}
    shapeless = [v.name for v in before.graph.input if not v.type.tensor_type.HasField("shape")]
    for rank in GUESSED_RANKS if shapeless else (None,):
        with contextlib.ExitStack() as stack:
            # the fused model first: where a runtime has no kernel for a fused node (bf16
            # LayerNormalization on ORT's CPU), an opener that falls back remembers it for the input too
            fused = stack.enter_context(_opened(open_session, _ranked(after, shapeless, rank), "the fused model"))
            reference = stack.enter_context(_opened(open_session, _ranked(before, shapeless, rank), "the input model"))
            try:
                samples, used = _run_samples(before, reference, fused, seed, rank)
                runs_on = getattr(fused, "backend", None), getattr(fused, "provider", None)  # while open
                break
            except _DoesNotRun as err:
                if rank == GUESSED_RANKS[-1] or not shapeless:
                    raise BadInputError(f"cannot verify: the input model does not run on random inputs "
                                        f"({err}); rerun with --no-verify") from None
    return {"passed": True, "backend": runs_on[0], "provider": runs_on[1],
            "tolerance": _tolerance_dict(used), "samples": samples}


@contextlib.contextmanager
def _opened(open_session, model, what: str):
    try:
        session = open_session(model)
    except LndeployError as err:
        raise BadInputError(f"cannot verify: {what} cannot be opened ({first_line(err)}); "
                            f"rerun with --no-verify") from err
    if hasattr(session, "__enter__"):
        with session as entered:
            yield entered
        return
    try:
        yield session
    finally:
        if hasattr(session, "close"):
            session.close()


class _DoesNotRun(Exception):
    """The input model ran at none of the sizes tried (the message: why, at the first size)."""


def _ranked(model, shapeless: list, rank: int | None):
    """A copy of ``model`` whose shape-less graph inputs have ``rank`` dims of their own names (runtimes
    check a feed against the declared shape; a guessed rank only narrows what the graph accepts)."""
    if rank is None:
        return model
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for value in copy.graph.input:
        if value.name in shapeless:
            dims = value.type.tensor_type.shape.dim
            for i in range(rank):
                dims.add().dim_param = f"{value.name}_dim{i}"
    return copy


def _run_samples(before, reference, fused, seed: int, rank: int | None) -> tuple[list, set]:
    from lndeploy import inputs

    specs = inputs.specs_from_onnx(_ranked(before, [v.name for v in before.graph.input
                                                     if not v.type.tensor_type.HasField("shape")], rank))
    samples, refused, used = [], [], set()
    last = None
    for size in SIZES:
        sizes, feed = _feed(specs, size, seed + len(samples) + len(refused))
        try:
            expected = reference.run(feed)
        except Exception as err:  # noqa: BLE001 - runtimes raise their own types; this size just does not fit
            refused.append(f"{_where(sizes)}: {first_line(err)}")
            continue
        samples.append(_sample(fused, feed, expected, sizes, used))
        last = sizes, feed
        if len(samples) == SAMPLES:
            break
    if not samples:
        raise _DoesNotRun(refused[0])
    sizes, feed = last
    edge = _constant_and_zero_rows(feed)
    if edge is not None:
        try:
            expected = reference.run(edge)
        except Exception:  # noqa: BLE001 - a graph whose control flow depends on the values: no such sample
            return samples, used
        samples.append(_sample(fused, edge, expected, {**sizes, "rows": "constant, zero"}, used))
    return samples, used


def _sample(fused, feed: dict, expected: dict, sizes: dict, used: set) -> dict:
    try:
        got = fused.run(feed)
    except Exception as err:  # noqa: BLE001
        raise ParityError(f"the fused model fails at {_where(sizes)} where the input model runs: "
                          f"{first_line(err)}") from err
    max_abs, max_rel = {}, {}
    for name, want in expected.items():
        max_abs[name], max_rel[name] = _check(name, np.asarray(want), np.asarray(got[name]), sizes)
        if _dtype_name(want) in GATED:
            used.add(_dtype_name(want))
    return {"sizes": sizes, "max_abs": max_abs, "max_rel": max_rel}


def _feed(specs, size: int, seed: int) -> tuple[dict, dict]:
    """(sizes, feed): every dynamic dim ``size``."""
    from lndeploy import inputs

    sizes = dict.fromkeys(inputs.dim_names(specs), size)
    # inputs.generate draws floats for numpy float kinds only: a bf16 input is drawn as fp32, then cast
    as_float = [replace(s, dtype=np.dtype(np.float32)) if s.dtype.name == "bfloat16" else s for s in specs]
    feed = inputs.generate(as_float, sizes, seed)
    for spec in specs:
        if spec.dtype.name == "bfloat16":
            feed[spec.name] = feed[spec.name].astype(spec.dtype)
    return sizes, feed


def _constant_and_zero_rows(feed: dict) -> dict | None:
    """A copy of ``feed`` whose float inputs have row 0 (along the last axis) constant and row 1 zero."""
    edge, changed = {}, False
    for name, array in feed.items():
        array = np.array(array)
        if _is_float(array) and array.ndim >= 1 and array.size >= 2 * array.shape[-1] > 0:
            rows = array.reshape(-1, array.shape[-1])
            rows[0], rows[1] = CONSTANT_ROW, 0
            changed = True
        edge[name] = array
    return edge if changed else None


def _check(name: str, want: np.ndarray, have: np.ndarray, sizes: dict) -> tuple[float, float]:
    from lndeploy import parity

    if have.shape != want.shape:
        raise ParityError(f"fuse changed the shape of output {name!r} from {want.shape} to {have.shape} "
                          f"at {_where(sizes)}; nothing written")
    tol = tolerance_for(_dtype_name(want))
    stats = parity.compare_arrays(have, want, tol)
    if not stats.passed:
        raise ParityError(f"fuse changed output {name!r} by max abs {stats.max_abs:.3g} (max rel "
                          f"{stats.max_rel:.3g}) at {_where(sizes)}: {stats.over_tolerance} of {stats.elements} "
                          f"elements beyond {_show_tolerance(tol)}, the worst {stats.worst_actual!r} where the "
                          f"input model gives {stats.worst_expected!r}; nothing written")
    return stats.max_abs, stats.max_rel


def tolerance_for(dtype_name: str):
    """The parity table's "rewrite" tolerance for an output dtype (float64 gates as fp32); exact for
    integers and booleans."""
    from lndeploy import parity

    try:
        return parity.tolerance(parity.precision_of(dtype_name), "rewrite")
    except ValueError:
        return parity.Tolerance(0.0)


def _is_float(array: np.ndarray) -> bool:
    return array.dtype.kind in "fc" or array.dtype.name == "bfloat16"  # ml_dtypes' bf16 is kind "V"


def _dtype_name(array) -> str:
    return np.asarray(array).dtype.name


def _tolerance_dict(dtype_names) -> dict:
    out = {}
    for name in sorted(dtype_names):
        tol = tolerance_for(name)
        out[name] = {"atol": tol.atol, "rtol": tol.rtol}
    return out


def _show_tolerance(tol) -> str:
    return f"abs {tol.atol:g} or rel {tol.rtol:g}" if tol.rtol is not None else f"abs {tol.atol:g}"


def describe_tolerance(tolerance: dict) -> str:
    """'float32 abs 1e-05 or rel 1e-05' for each dtype compared (for the report's lines)."""
    from lndeploy import parity

    return ", ".join(f"{k} {_show_tolerance(parity.Tolerance(v['atol'], v['rtol']))}"
                     for k, v in tolerance.items()) or "no float outputs"


def _where(sizes: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items()) or "the model's static shapes"
