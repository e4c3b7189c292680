"""Run the PyTorch model and the artifact through Polygraphy's Comparator and gather the statistics."""

from __future__ import annotations

import contextlib

from lndeploy import inputs as gen
from lndeploy.checker.signature import pair_inputs
from lndeploy.errors import BadInputError, first_line


def compare(spec, artifact: str, backend: str, tol, samples: int | None, seed: int, debug: bool, on_sample=None,
            budget=None, given=None, record=None, **session_options):
    """PyTorch against ``artifact`` on generated inputs: Polygraphy's ``Comparator`` runs both runners
    on each input set, ``lndeploy.parity`` compares (one set at a time, so ``samples`` may be large).
    ``tol``: a ``parity.Tolerance``. ``on_sample(actual, expected)``: sees every set's outputs (the
    error histograms of ``--plots``). ``budget`` (a ``lndeploy.checker.budget.Budget``), when given,
    replaces ``tol``, measured first on the same inputs if it is still pending. ``given``: ``(where,
    input sets)`` to run instead of generated ones (``lndeploy.input_sets``); ``record(feed,
    pytorch_outputs)``: sees every set that ran with its inputs (``--save-outputs``)."""
    from polygraphy.comparator import Comparator

    from lndeploy import parity
    from lndeploy.checker.result import CheckResult
    from lndeploy.checker.runners import TorchRunner, artifact_runner
    from lndeploy.session import Session

    session = Session(artifact, backend=backend, **session_options)
    provider = session.provider
    pairing = pair_inputs(spec, session.inputs)
    output_names = session.output_names
    skipped = []
    runners = [artifact_runner(session, backend, pairing.names, pairing.ranks), TorchRunner(spec, output_names)]
    if budget is not None:
        if budget.pending:
            budget.measure(spec, runnable_schedule(spec, samples, seed, pairing.pinned, [], given))
        tol = budget.tolerance

    def run(feed):
        with _polygraphy_quiet(debug):
            (_, [ours]), (_, [theirs]) = Comparator.run(runners, data_loader=[feed])
        ours, theirs = dict(ours.items()), dict(theirs.items())
        if on_sample is not None:
            on_sample(ours, theirs)
        if record is not None:
            record(feed, theirs)
        return ours, theirs

    try:
        outcome = parity.run_parity(runnable_schedule(spec, samples, seed, pairing.pinned, skipped, given), run, tol,
                                    names=output_names)
    finally:
        session.close()
    if not outcome.samples and outcome.error is None:
        raise BadInputError(f"PyTorch cannot run the model at any generated size: {skipped[0]['reason']}")
    # atol: the tolerance asked for; with a budget, the gate was budget.limit (>= atol), reported beside it
    result = CheckResult(passed=outcome.passed, backend=backend, provider=provider,
                         atol=budget.atol if budget is not None else tol.atol,
                         rtol=tol.rtol, artifact=artifact, skipped=skipped, error=outcome.error,
                         notes=pairing.notes + _nonfinite_notes(outcome.outputs) + (budget.notes if budget else []))
    result.samples = [{"sizes": s.sizes, "shapes": s.shapes, "passed": s.passed} for s in outcome.samples]
    result.outputs = outcome.outputs
    return result


def given_inputs(spec, inputs) -> tuple[str, object] | None:
    """``(where, input sets)`` to check on instead of generated ones: the ``inputs`` file or folder
    (read and checked against the signature now, before any export), else the model file's
    ``sample_inputs()`` (drawn lazily); None: generated inputs."""
    from lndeploy import input_sets

    if inputs is not None:
        sets = input_sets.load(inputs)
        specs = gen.specs_from_examples(spec.inputs, spec.dynamic_axes)
        list(input_sets.schedule(sets, specs, f"--inputs {inputs}"))
        return f"--inputs {inputs}", sets
    if spec.sample_inputs is not None:
        return f"{spec.source}: sample_inputs()", _Replay(spec.given_input_sets)
    return None


class _Replay:
    """Input sets drawn afresh on each pass (the budget, the comparison and the layer replay each
    take one): ``sample_inputs()`` is called again rather than its generator shared."""

    def __init__(self, make):
        self.make = make

    def __iter__(self):
        return iter(self.make())


def _nonfinite_notes(outputs: dict) -> list[str]:
    """NaN or inf where PyTorch has the same value is parity (lndeploy.parity's rule): said, not hidden."""
    return [f"output {name!r}: {entry['matched_nonfinite']} elements are NaN/inf in PyTorch itself and equal in "
            "the artifact (compared as equal; the generated inputs drive the model there)"
            for name, entry in outputs.items() if entry["matched_nonfinite"]]


def runnable_schedule(spec, samples: int | None, seed: int, pinned: dict, skipped: list, given=None):
    """Generated (sizes, feed) pairs that PyTorch itself can run, drawn lazily; the others are appended
    to ``skipped`` with the reason (reported, not failed). ``pinned``: dynamic dims the artifact fixes,
    generated at that size only. ``given``: ``(where, sets)`` used as they are instead (the first
    ``samples`` of them when that is set), checked against the same pinned signature; iterable
    more than once (``given_inputs``)."""
    import itertools

    import torch

    from lndeploy import input_sets
    from lndeploy.modelfile import ModelFaultError

    specs = gen.pin(gen.specs_from_examples(spec.inputs, spec.dynamic_axes), pinned)
    if given is None:
        source = gen.schedule(specs, samples, seed)
    else:
        source = itertools.islice(input_sets.schedule(given[1], specs, given[0]), samples)
    for sizes, feed in source:
        try:
            with torch.inference_mode():
                spec.call({k: torch.from_numpy(v) for k, v in feed.items()})
        except ModelFaultError:  # sys.exit in forward(): no size explains it
            raise
        except Exception as err:  # the model itself does not support these sizes
            reason = f"{type(err).__name__}: {first_line(err)[:200]}"
            if given is not None:  # a given set is used as given, or not at all
                raise BadInputError(f"{given[0]}: PyTorch itself fails on the input set at sizes {sizes}: "
                                    f"{reason}") from err
            skipped.append({"sizes": sizes, "reason": reason})
            continue
        yield sizes, feed


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
