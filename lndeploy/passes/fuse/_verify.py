"""Check a fused model against its input with ONNX Runtime on the same random inputs.

Floats come from a seeded normal distribution, integers from {0, 1} (safe as indices), booleans
uniformly. Dynamic dims all take one small size; sizes are tried in order until the input model
runs at two of them: a graph exported with a loop unrolled to a fixed length declares its sequence
dim dynamic but runs only from that length on. Plugin nodes run through the reference function
that :class:`lndeploy.backends.onnxruntime.OrtSession` adds. Where ONNX Runtime's CPU provider has
no kernel for the input model (bf16 Gemm, MatMul, Add... are NOT_IMPLEMENTED), both models run on
ONNX's reference evaluator instead, which computes in the declared types.
"""

from __future__ import annotations

import numpy as np

from lndeploy.errors import BadInputError, ParityError

SIZES = (2, 3, 8, 16, 64)
SAMPLES = 2
# max abs change allowed per output dtype; fp16/bf16 graphs compute the fused LN's statistics in
# fp32 (stash_type=1) where the primitive ops did not, so they legitimately move more
TOLERANCE = {"float32": 1e-5, "float64": 1e-5, "float16": 1e-2, "bfloat16": 1e-2}


def compare(before, after, *, seed: int = 0) -> dict:
    """Raise ParityError if any output of ``after`` differs from ``before``'s beyond TOLERANCE."""
    from lndeploy.backends.onnxruntime import OrtSession

    if after == before:  # nothing fused: the input goes back as it was, nothing to run (or to refuse)
        return {"passed": True, "backend": None, "provider": None, "unchanged": True,
                "tolerance": {k: TOLERANCE[k] for k in sorted(TOLERANCE)}, "samples": []}
    try:
        # the input as written (ORT would otherwise fuse its primitive-op LayerNorm itself), on the CPU
        reference = OrtSession(before, providers=["CPUExecutionProvider"], optimize=False)
        fused = OrtSession(after)
    except Exception as err:  # noqa: BLE001 - ORT raises its own types
        if "NOT_IMPLEMENTED" not in str(err):
            raise BadInputError(f"cannot verify: ONNX Runtime cannot load the input model "
                                f"({_first_line(err)}); rerun with --no-verify") from err
        reference, fused = _on_reference_evaluator(before), _on_reference_evaluator(after)
    samples, refused = [], []
    for size in SIZES:
        feed, sizes = _feed(reference.inputs, size, seed + len(samples) + len(refused))
        try:
            expected = _run(reference, feed)
        except Exception as err:  # noqa: BLE001 - ORT raises its own types; this size just does not fit
            refused.append(f"{_where(sizes)}: {_first_line(err)}")
            continue
        try:
            got = _run(fused, feed)
        except Exception as err:  # noqa: BLE001
            raise ParityError(f"the fused model fails at {_where(sizes)} where the input model runs: "
                              f"{_first_line(err)}") from err
        samples.append({"sizes": sizes, "max_abs": _check(expected, got, sizes)})
        if len(samples) == SAMPLES:
            break
    if not samples:
        raise BadInputError(f"cannot verify: ONNX Runtime cannot run the input model on random inputs "
                            f"({refused[0]}); rerun with --no-verify")
    return {"passed": True, "backend": getattr(fused, "backend", "onnxruntime"), "provider": fused.provider,
            "tolerance": {k: TOLERANCE[k] for k in sorted(TOLERANCE)}, "samples": samples}


def _on_reference_evaluator(model):
    from lndeploy.backends.reference import ReferenceSession

    try:
        return ReferenceSession(model)
    except BadInputError as err:
        raise BadInputError(f"cannot verify: neither ONNX Runtime nor the ONNX reference evaluator "
                            f"runs this model ({err}); rerun with --no-verify") from err


def _run(session, feed: dict) -> dict:
    """Run quietly: a size the model does not take is expected while probing, not worth an ORT log."""
    import onnxruntime as ort

    if not hasattr(session, "session"):  # the reference evaluator
        return session.run(feed)

    options = ort.RunOptions()
    options.log_severity_level = 4
    names = [o.name for o in session.outputs]
    return {n: np.asarray(v) for n, v in zip(names, session.session.run(names, feed, options))}


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check(expected: dict, got: dict, sizes: dict) -> dict:
    errors = {}
    for name, want in expected.items():
        have = got[name]
        if have.shape != want.shape:
            raise ParityError(f"fuse changed the shape of output {name!r} from {want.shape} to {have.shape} "
                              f"at {_where(sizes)}; nothing written")
        errors[name] = _max_abs(want, have)
        tolerance = TOLERANCE.get(want.dtype.name, 0.0)
        if errors[name] > tolerance:
            raise ParityError(f"fuse changed output {name!r} by max abs {errors[name]:.3g} > {tolerance:g} "
                              f"at {_where(sizes)}; nothing written")
    return errors


def _max_abs(want: np.ndarray, have: np.ndarray) -> float:
    if want.size == 0:
        return 0.0
    if want.dtype.name == "bfloat16":  # ml_dtypes: numpy kind "V", but a float
        want, have = want.astype(np.float32), have.astype(np.float32)
    if want.dtype.kind not in "fc":
        return 0.0 if np.array_equal(want, have) else float("inf")
    want64, have64 = want.astype(np.float64), have.astype(np.float64)
    same_nan = np.isnan(want64) & np.isnan(have64)
    same_inf = np.isinf(want64) & (want64 == have64)
    diff = np.where(same_nan | same_inf, 0.0, np.abs(want64 - have64))
    return float(np.nan_to_num(diff, nan=np.inf).max())


def _feed(metas, size: int, seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    feed, sizes = {}, {}
    for meta in metas:
        shape = []
        for i, dim in enumerate(meta.shape):
            if isinstance(dim, int):
                shape.append(dim)
            else:
                sizes[str(dim) if dim else f"{meta.name}[{i}]"] = size
                shape.append(size)
        dtype = meta.dtype if meta.dtype is not None else np.dtype(np.float32)
        if dtype.kind == "f" or dtype.name == "bfloat16":
            feed[meta.name] = rng.standard_normal(shape).astype(np.float32).astype(dtype)
        elif dtype.kind == "b":
            feed[meta.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feed[meta.name] = rng.integers(0, 2, shape).astype(dtype)
    return feed, sizes


def _where(sizes: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items()) or "the model's static shapes"
