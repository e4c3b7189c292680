"""``lndeploy.benchmark``: latency and throughput per backend, PyTorch eager as the baseline, one process.

Procedure, per batch size: make the inputs once (seeded, :mod:`lndeploy.inputs`), bind every backend
to them, check each backend's outputs against PyTorch's (reported, so a fast wrong graph shows), warm
every backend up, then time interleaved rounds (:mod:`lndeploy.benchmark.timing`) until ``budget``
seconds of timed calls or ``max_runs`` calls per backend. Ratio = PyTorch's median latency / the
backend's median latency, both from this run and this batch size.
"""

from __future__ import annotations

import math
import tempfile
import time

from lndeploy.benchmark import allocator, machine, report, runners, target as targets, timing
from lndeploy.errors import BadInputError, UnavailableError

DEFAULT_BATCHES = (1, 32)
DEFAULT_BUDGET = 3.0
LN_OF = {"onnxruntime": "native", "onnxruntime-fused": "native", "onnxruntime-plugin": "plugin", "tensorrt": "native"}


def bench(target, *, backends=None, batches=DEFAULT_BATCHES, threads: int | None = None,
          budget: float = DEFAULT_BUDGET, max_runs: int | None = None, dims: dict | None = None,
          keep_freed_memory: bool = True, ort_tuned: bool = True, json_path=None, progress=None,
          log=None) -> report.BenchReport:
    """Benchmark ``target`` (a model file/module, an ``.onnx`` file or a TensorRT engine).

    ``backends``: names from ``pytorch, onnxruntime, onnxruntime-fused, onnxruntime-plugin,
    tensorrt`` (default: all that can run here; the others are listed as skipped with the reason);
    asking for one that cannot run raises ``UnavailableError``. ``onnxruntime-fused`` is the ORT-only
    fused graph of :mod:`lndeploy.backends.ort_optimized`, run only where it is proven equal to the
    plain one. ``threads``: for PyTorch and ONNX Runtime (default: every usable core). ``budget``:
    timed seconds per batch size, shared by the backends. ``dims``: sizes of non-batch dynamic dims,
    e.g. ``{"seq": 128}``. ``keep_freed_memory``: tune glibc malloc so that no backend is timed
    re-faulting its freed pages (:mod:`lndeploy.benchmark.allocator`; process-wide). ``ort_tuned``:
    ORT sessions with the measured-faster options of
    :func:`lndeploy.backends.ort_optimized.tuned_session` (False: ORT's defaults).
    ``progress(done, total)`` and ``log(line)`` report progress. ``json_path``: where the report is
    written (atomically).
    """
    chosen = _check_args(backends, batches, threads, budget, max_runs)
    if json_path is not None:  # fail before a long run, not after it
        from lndeploy.outpaths import model_file, prepare_outputs

        source = model_file(target)
        prepare_outputs({"--json": json_path},
                        {"TARGET": source, "the engine's sidecar": f"{source}.json" if source else None})
    if backends is not None and "tensorrt" in chosen:  # say so before an export of several seconds
        why = runners.tensorrt_unavailable()
        if why:
            raise UnavailableError(f"backend tensorrt cannot run: {why}")
    threads = threads or machine.usable_cores()
    facts = machine.machine_facts()
    malloc = allocator.keep_freed_memory() if keep_freed_memory else {"applied": False, "reason": "not asked"}
    started, cpu_start = time.perf_counter(), machine.cpu_snapshot()
    with tempfile.TemporaryDirectory(prefix="lndeploy-bench-") as workdir:
        lns = tuple(dict.fromkeys(LN_OF[b] for b in chosen if b in LN_OF))
        tgt = targets.load_target(target, workdir, lns, log)
        plan = None if tgt.kind == "engine" else targets.plan_sizes(tgt, list(batches), dict(dims or {}))
        active, skipped = [], []
        try:
            _make_runners(tgt, chosen, backends is not None, threads, ort_tuned, workdir, log, active, skipped)
            if not active:
                raise UnavailableError("no backend can run here: "
                                       + "; ".join(f"{s.name}: {s.reason}" for s in skipped))
            if plan is None:  # an engine's inputs are known once it is loaded
                tgt.specs = active[0].input_specs()
                plan = targets.plan_sizes(tgt, list(batches), dict(dims or {}))
            results = _run_plan(tgt, active, plan, budget, max_runs, progress)
        finally:
            for runner in active:
                runner.close()
    facts["load_average_end"] = machine.load_average()
    facts["other_processes_cpu"] = machine.other_processes_share(cpu_start, machine.cpu_snapshot())
    data = report.assemble(tgt, facts, machine.versions(*_extra_dists(active)), active, skipped, results, {
        "threads": threads, "budget_s_per_batch": budget, "max_runs": max_runs, "batches": [b for b, _ in plan],
        "dims": dict(dims or {}), "malloc": malloc, "ort_tuned": ort_tuned, "timing": timing.describe(),
        "wall_s": round(time.perf_counter() - started, 2)})
    result = report.BenchReport(data)
    if json_path is not None:
        result.write_json(json_path)
    return result


def _check_args(backends, batches, threads, budget, max_runs) -> list:
    chosen = list(runners.BACKENDS) if backends is None else list(dict.fromkeys(backends))
    unknown = [b for b in chosen if b not in runners.BACKENDS]
    if unknown:
        raise BadInputError(f"unknown backend {unknown[0]!r}; choose from {', '.join(runners.BACKENDS)}")
    if not chosen:
        raise BadInputError("no backend given")
    if not batches or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in batches):
        raise BadInputError(f"batch sizes must be positive integers, got {list(batches or [])}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise BadInputError(f"threads must be a positive integer, got {threads!r}")
    if not isinstance(budget, (int, float)) or not math.isfinite(budget) or budget <= 0:
        raise BadInputError(f"budget must be a positive finite number of seconds, got {budget!r}")
    if max_runs is not None and max_runs < 1:
        raise BadInputError(f"max runs must be at least 1, got {max_runs}")
    return chosen


def _make_runners(tgt, chosen: list, explicit: bool, threads: int, tuned: bool, workdir: str, log,
                  active: list, skipped: list) -> None:
    """Fill ``active`` and ``skipped`` (the caller's lists, so it can close what was made on an error)."""
    for name in chosen:
        if log:
            log(f"preparing {name}")
        try:
            made = _make_runner(name, tgt, threads, tuned, workdir)
        except UnavailableError as err:  # e.g. no ORT kernel for a bf16 graph: the others may still run
            made = runners.Skipped(name, getattr(err, "reason", str(err)))
        if isinstance(made, runners.Skipped):
            if explicit:
                error = BadInputError if made.name == "pytorch" else UnavailableError
                raise error(f"backend {made.name} cannot run: {made.reason}")
            skipped.append(made)
        else:
            active.append(made)


def _make_runner(name: str, tgt, threads: int, tuned: bool, workdir: str):
    if name == "pytorch":
        if tgt.spec is None:
            return runners.Skipped(name, f"no PyTorch baseline for an {tgt.kind} artifact: bench the model "
                                         "file to get ratios")
        return runners.TorchRunner(tgt.spec, threads)
    if name == "tensorrt":
        why = runners.tensorrt_unavailable()
        if why:
            return runners.Skipped(name, why)
        if tgt.kind == "engine":
            return runners.TrtRunner(engine_path=tgt.ref)
        _model, path = tgt.onnx.get("native") or next(iter(tgt.onnx.values()))
        return runners.TrtRunner(onnx_path=path, workdir=workdir)
    if tgt.kind == "engine":
        return runners.Skipped(name, "a TensorRT engine runs only on TensorRT")
    form = LN_OF[name]
    if form not in tgt.onnx:
        other = "native LayerNormalization" if form == "plugin" else "plugin"
        return runners.Skipped(name, f"the artifact has {other} nodes; its backend is the other onnxruntime one")
    model, _path = tgt.onnx[form]
    if name == "onnxruntime-fused":
        return _ort_fused(model, tgt, threads, tuned)
    graph = "as exported" if form == "native" else "plugin nodes, CPU reference function"
    return runners.OrtRunner(name, model, threads, {"graph": graph}, tuned)


def _ort_fused(model, tgt, threads: int, tuned: bool):
    """The ORT-only fused graph, where it is proven equal to the plain one on the model's inputs."""
    from lndeploy import inputs
    from lndeploy.backends.ort_optimized import optimize_for_ort

    feeds = [feed for _, feed in inputs.schedule(tgt.specs, samples=None, seed=7)] if tgt.specs else None
    fused, proof = optimize_for_ort(model, feeds, threads=threads)
    if not proof.applied:
        return runners.Skipped("onnxruntime-fused", proof.reason)
    return runners.OrtRunner("onnxruntime-fused", fused, threads, {
        "graph": "ORT-only fused (in memory): " + ", ".join(sorted(proof.fusions)), "ort_fusion": proof.as_dict()},
        tuned)


def _run_plan(tgt, active: list, plan: list, budget: float, max_runs, progress) -> list:
    """Time every batch size of ``plan``; progress runs 0 -> budget * len(plan), never backwards."""
    from lndeploy import inputs

    total = budget * len(plan)
    results = []
    for index, (batch, sizes) in enumerate(plan):
        feed = inputs.generate(tgt.specs, sizes, seed=1000 + batch)
        fns, accuracy = _bind_all(active, feed)
        cpu_start = machine.cpu_snapshot()
        samples = timing.run_rounds(fns, budget, max_runs, _progress_in(progress, index * budget, budget, total))
        cpu_end = machine.cpu_snapshot()
        results.append({"batch": batch, "sizes": sizes,
                        "shapes": {k: list(v.shape) for k, v in feed.items()},
                        "samples": samples, "max_abs_vs_pytorch": accuracy,
                        "other_processes_cpu": machine.other_processes_share(cpu_start, cpu_end),
                        "steal_cpu": machine.steal_share(cpu_start, cpu_end)})
        if progress:
            progress(budget * (index + 1), total)
    return results


def _progress_in(progress, start: float, span: float, total: float):
    """Timed seconds within one batch size -> overall progress, capped at that batch's share."""
    spent = [0.0]

    def advance(seconds: float) -> None:
        spent[0] += seconds
        if progress:
            progress(start + min(spent[0], span), total)

    return advance


def _bind_all(active: list, feed: dict):
    fns, accuracy = {}, {}
    reference = None
    for runner in active:
        fns[runner.name] = runner.bind(feed)
        got = runner.outputs(feed)
        if runner.name == "pytorch":
            reference = got
        elif reference is not None:
            accuracy[runner.name] = runners.max_abs_difference(reference, got)
    for fn in fns.values():
        timing.warm_up(fn)
    return fns, accuracy


def _extra_dists(active: list) -> list:
    return ["tensorrt", "tensorrt-rtx"] if any(r.name == "tensorrt" for r in active) else []
