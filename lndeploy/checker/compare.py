"""Run the PyTorch model and the artifact through Polygraphy's Comparator and gather the statistics."""

from __future__ import annotations

import contextlib

from lndeploy import inputs as gen
from lndeploy.checker.signature import pair_inputs
from lndeploy.errors import BadInputError, ParityError


def compare(spec, artifact: str, backend: str, atol: float, rtol: float | None, samples: int | None,
            seed: int, debug: bool):
    from polygraphy.comparator import Comparator
    from polygraphy.comparator.compare import SimpleCompareFunc

    from lndeploy.checker import CheckResult
    from lndeploy.checker.runners import TorchRunner, artifact_runner
    from lndeploy.session import Session

    opened = {}

    def open_session():
        opened["session"] = Session(artifact, backend=backend)
        return opened["session"]

    probe = open_session()
    pairing = pair_inputs(spec, probe.inputs)
    output_names = probe.output_names
    schedule, skipped = _runnable_schedule(spec, samples, seed, pairing.pinned)
    if not schedule:
        raise BadInputError(f"PyTorch cannot run the model at any generated size: {skipped[0]['reason']}")
    runners = [artifact_runner(probe, lambda: opened.get("session") or open_session(), backend, pairing.names),
               TorchRunner(spec, output_names)]
    feeds = [feed for _, feed in schedule]
    with _polygraphy_quiet(debug):
        try:
            results = Comparator.run(runners, data_loader=feeds)
        except ParityError as err:
            return CheckResult(passed=False, backend=backend, provider=probe.provider, atol=atol, rtol=rtol,
                               artifact=artifact, skipped=skipped, error=str(err), notes=pairing.notes,
                               samples=[{"sizes": sizes, "shapes": {k: list(v.shape) for k, v in feed.items()}}
                                        for sizes, feed in schedule])
        nonfinite_notes, nonfinite_error = _match_nonfinite(results, schedule)
        func = SimpleCompareFunc(atol=atol, rtol=rtol if rtol is not None else 0.0, check_error_stat="elemwise")
        accuracy = Comparator.compare_accuracy(results, compare_func=func, comparisons=[(0, 1)])
    iterations = next(iter(accuracy[0].values()))  # one compare func, one runner pair
    result = CheckResult(passed=bool(accuracy), backend=backend, provider=probe.provider, atol=atol, rtol=rtol,
                         artifact=artifact, skipped=skipped, notes=pairing.notes + nonfinite_notes)
    if nonfinite_error:
        result.passed, result.error = False, nonfinite_error
    for index, ((sizes, feed), per_output) in enumerate(zip(schedule, iterations)):
        result.samples.append({"sizes": sizes, "shapes": {k: list(v.shape) for k, v in feed.items()},
                               "passed": all(bool(r) for r in per_output.values())})
        for name, stats in per_output.items():
            if not hasattr(stats, "max_absdiff"):  # Polygraphy gives False where it cannot compare
                result.passed = False
                result.error = result.error or _uncomparable(results, index, name, sizes)
                continue
            _merge(result.outputs, name, stats, index)
    finish_stats(result.outputs)
    missing = [n for n in output_names if n not in result.outputs]
    if missing:
        result.passed = False
        for name in missing:
            result.outputs[name] = {"max_abs": float("nan"), "max_rel": float("nan"), "mean_abs": float("nan"),
                                    "worst_sample": None, "note": "not compared"}
    return result


def _match_nonfinite(results, schedule) -> tuple[list[str], str | None]:
    """NaN or inf where PyTorch has the same value is parity, not a failure: a generated mask that pads a
    whole row gives NaN in PyTorch itself. Polygraphy fails any NaN yet reports the finite max abs
    error, so the summary read 'FAILED: max abs 7e-07 (atol 1e-4)'. Matching elements are zeroed in
    both results (noted); a NaN or inf on one side only becomes the failure's one line."""
    import numpy as np

    (_, artifact_runs), (_, torch_runs) = results
    counts, error = {}, None
    for (sizes, _), ours, theirs in zip(schedule, artifact_runs, torch_runs):
        for name in ours.keys() & theirs.keys():
            a, b = ours[name], theirs[name]
            if a.shape != b.shape or a.dtype.kind != "f" or b.dtype.kind != "f":
                continue
            bad_a, bad_b = ~np.isfinite(a), ~np.isfinite(b)
            same = bad_a & bad_b & ((a == b) | (np.isnan(a) & np.isnan(b)))
            if same.any():
                counts[name] = counts.get(name, 0) + int(same.sum())
                ours[name], theirs[name] = np.where(same, 0, a), np.where(same, 0, b)
            odd = (bad_a | bad_b) & ~same
            if odd.any() and error is None:
                side = "the artifact" if (bad_a & ~same).any() else "PyTorch"
                where = f"at sizes {sizes}" if sizes else "at the example's sizes"
                error = (f"output {name!r} has {int(odd.sum())} NaN/inf elements from {side} where the other "
                         f"side differs, {where}")
    notes = [f"output {name!r}: {n} elements are NaN/inf in PyTorch itself and equal in the artifact "
             "(compared as equal; the generated inputs drive the model there)" for name, n in counts.items()]
    return notes, error


def _uncomparable(results, index: int, name: str, sizes: dict) -> str:
    """Why an output could not be compared: its shapes (a scalar returned as [1], a dim cut short)."""
    shapes = [list(runs[index][name].shape) if name in runs[index] else "none" for _, runs in results]
    at = f"at sizes {sizes}" if sizes else "at the example's sizes"
    return f"output {name!r} has shape {shapes[0]} from the artifact but {shapes[1]} from PyTorch {at}"


def _merge(outputs: dict, name: str, stats, index: int) -> None:
    current = outputs.get(name)
    entry = {"max_abs": stats.max_absdiff, "max_rel": stats.max_reldiff, "mean_abs": stats.mean_absdiff,
             "worst_sample": index}
    if current is None:
        outputs[name] = entry
        entry["_mean_sum"], entry["_count"] = stats.mean_absdiff, 1
        return
    current["_mean_sum"] += stats.mean_absdiff
    current["_count"] += 1
    current["mean_abs"] = current["_mean_sum"] / current["_count"]
    current["max_rel"] = max(current["max_rel"], stats.max_reldiff)
    if not stats.max_absdiff <= current["max_abs"]:  # NaN wins: it is the worst
        current["max_abs"], current["worst_sample"] = stats.max_absdiff, index


def finish_stats(outputs: dict) -> None:
    for entry in outputs.values():
        entry.pop("_mean_sum", None)
        entry.pop("_count", None)


def _runnable_schedule(spec, samples: int | None, seed: int, pinned: dict):
    """Generated (sizes, feed) pairs that PyTorch itself can run; the others are reported, not failed.
    ``pinned``: dynamic dims the artifact fixes, generated at that size only."""
    import torch

    from lndeploy.modelfile import ModelFaultError

    specs = gen.pin(gen.specs_from_examples(spec.inputs, spec.dynamic_axes), pinned)
    keep, skipped = [], []
    for sizes, feed in gen.schedule(specs, samples, seed):
        try:
            with torch.inference_mode():
                spec.call({k: torch.from_numpy(v) for k, v in feed.items()})
        except ModelFaultError:  # sys.exit in forward(): no size explains it
            raise
        except Exception as err:  # the model itself does not support these sizes
            skipped.append({"sizes": sizes, "reason": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"})
            continue
        keep.append((sizes, feed))
    return keep, skipped


@contextlib.contextmanager
def _polygraphy_quiet(debug: bool):
    import importlib.util

    import polygraphy.logger.logger as polygraphy_logger
    from polygraphy.logger import G_LOGGER

    if polygraphy_logger.COLORED_MODULE_PRESENT is None:
        # else Polygraphy prints a "[W] 'colored' module is not installed" line on stdout
        polygraphy_logger.COLORED_MODULE_PRESENT = importlib.util.find_spec("colored") is not None
    previous = G_LOGGER.module_severity
    if not debug:
        # our summary line says what failed; Polygraphy's per-sample [E] lines are for --debug
        G_LOGGER.module_severity = G_LOGGER.CRITICAL
    try:
        yield
    finally:
        G_LOGGER.module_severity = previous
