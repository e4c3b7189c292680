"""Parity check: the PyTorch original against a deployed artifact, on generated inputs, via Polygraphy.

Polygraphy's ``Comparator`` runs both runners on the same inputs, one input set at a time, and
``lndeploy.parity`` compares every output element-wise (relative error divides by PyTorch's output). The
gate is max abs error <= atol on every element (README "How check decides"); with ``rtol`` given, an
element also passes when its relative error is within ``rtol``. Inputs vary every dynamic dim
(``lndeploy.inputs``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lndeploy.checker.result import CheckResult
from lndeploy.errors import BadInputError, first_line

__all__ = ["CheckResult", "check"]

def check(model, *, onnx=None, engine=None, backend: str | None = None, atol: float | None = None,
          rtol: float | None = None, samples: int | None = None, report=None, ln: str | None = None,
          precision: str | None = None, opset: int | None = None, seed: int = 0, debug: bool = False,
          example_inputs=None, dynamic_axes=None, url: str | None = None, model_name: str | None = None,
          layers: str | None = None, plots=None, budget: str | None = None,
          plugin_impl: str | None = None, inputs=None, save_outputs=None) -> CheckResult:
    """Compare ``model`` with its deployed artifact on generated inputs.

    ``model``: a model-file reference, a ``ModelSpec``, or a ``torch.nn.Module`` with
    ``example_inputs``. Without ``onnx`` or ``engine`` the model is exported first (``ln``,
    ``precision``, ``opset``; defaults native, fp32, 18), its verification gated at the same ``atol``
    and ``rtol`` as the check. With an artifact, its own LN form and precision are read from it (and
    set the default tolerance); options that contradict it are refused. ``report``: a JSON file to
    write (README "How check decides" lists its fields; ``"-"`` prints it), also when the check ends in an error. ``url`` and
    ``model_name``: the artifact is model ``model_name`` on a KServe v2 server (docs/serving.md).
    ``layers`` (``norms``/``all``): compare intermediate tensors even when the check passes (a failed
    check always compares the normalizations; ``lndeploy.checker.layers``). ``plots``: a folder for
    PNGs of the error (``lndeploy.checker.plots``; needs matplotlib). ``budget``: ``auto`` (default for
    fp16/bf16 without ``atol``: the gate is ``max(atol, k x PyTorch's own error in that precision)``,
    ``lndeploy.checker.budget``) or ``fixed`` (the tolerance alone). ``plugin_impl``: ``onnx`` (default:
    plugin nodes run as ONNX's LayerNormalization) or ``kernel`` (lndeploy's Triton kernel under the
    Triton interpreter, on the onnx-reference backend). ``inputs``: a .npz/.npy file or folder of input
    sets to use instead of generated ones (``lndeploy.input_sets``; else the model file's
    ``sample_inputs()`` when it has one); ``save_outputs``: a folder to write PyTorch's outputs and the
    inputs used to (``lndeploy.checker.golden``). Returns a ``CheckResult``; the caller decides what a
    failure means (the CLI exits 1).
    """
    from lndeploy.checker import report as reports
    from lndeploy.errors import LndeployError

    if sum(a is not None for a in (onnx, engine, url)) > 1:
        raise BadInputError("give one of --onnx, --engine and --url")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not 0 <= value < float("inf"):
            raise BadInputError(f"{name} must be a finite number >= 0, got {value}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise BadInputError(f"seed must be an integer from 0 to 2**32-1, got {seed!r}")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise BadInputError(f"samples must be a positive integer, got {samples!r}")
    if report is not None:  # before minutes of export and inference, not after ("-": stdout)
        from lndeploy.outpaths import model_file, prepare_outputs

        prepare_outputs({"--report": report}, {"MODEL": model_file(model), "--onnx": onnx, "--engine": engine,
                                               "the engine's sidecar": f"{engine}.json" if engine else None,
                                               "--inputs": inputs})
    if layers not in (None, "norms", "all"):
        raise BadInputError(f"--layers must be norms or all, got {layers!r}")
    if plots is not None:
        from lndeploy.checker.plots import check_folder

        check_folder(plots)
    if save_outputs is not None:
        from lndeploy.checker.golden import check_target

        check_target(save_outputs, inputs)
    if model_name is not None and url is None:
        raise BadInputError("--model-name names a model on a server: give the server's --url too")
    served = f"{url} model {model_name}" if url else None
    context = {"backend": backend, "artifact": {"path": str(onnx or engine) if (onnx or engine) else served,
                                                "sha256": None}}
    try:
        result = _check(model, onnx, engine, backend, atol, rtol, samples, ln, precision, opset, seed, debug,
                        example_inputs, dynamic_axes, context, url, model_name, layers, plots, budget,
                        plugin_impl, inputs, save_outputs)
    except LndeployError as err:
        if report is not None:
            reports.write(report, reports.failure(err, model=model, seed=seed, **context))
        raise
    if report is not None:
        reports.write(report, {**reports.header(model=model, seed=seed), **result.to_report()})
    return result


def _check(model, onnx, engine, backend, atol, rtol, samples, ln, precision, opset, seed, debug, example_inputs,
           dynamic_axes, context: dict, url=None, model_name=None, layers=None, plots=None, budget_mode=None,
           plugin_impl=None, inputs=None, save_outputs=None) -> CheckResult:
    from lndeploy import modelfile, parity
    from lndeploy.checker import budget as budgets
    from lndeploy.checker import golden
    from lndeploy.checker import report as reports
    from lndeploy.checker.compare import compare, given_inputs, runnable_schedule

    spec = modelfile.resolve(model, example_inputs, dynamic_axes)
    given = given_inputs(spec, inputs)  # None: generated
    recorder = golden.Recorder() if save_outputs is not None else None
    artifact = onnx or engine
    if artifact is not None:
        if not Path(artifact).is_file():
            raise BadInputError(f"artifact not found: {artifact}")
        ln, precision = _artifact_form(artifact, ln, precision, opset)
    ln, precision, opset = ln or "native", precision or "fp32", opset or 18
    plugin_impl = _plugin_option(plugin_impl, backend, engine is not None or url is not None, ln)
    backend = backend or ("onnx-reference" if plugin_impl == "kernel" else "tensorrt" if engine is not None else
                          "kserve" if url else "onnxruntime")
    tol = parity.tolerance(precision, atol=atol, rtol=rtol)
    gate = budgets.plan(budget_mode, precision, tol, atol_given=atol is not None)
    context.update(backend=backend, precision=precision, ln=ln, tolerance={"atol": tol.atol, "rtol": tol.rtol},
                   budget=gate.to_dict())
    histograms = None
    if plots is not None:
        from lndeploy.checker.plots import ErrorHistograms

        histograms = ErrorHistograms()
    on_sample = histograms.add if histograms else None
    if url is not None:  # a served model: the server runs it, the backend is its KServe v2 client
        result = compare(spec, url, "kserve", tol, samples, seed, debug, model_name=model_name, on_sample=on_sample,
                         budget=gate, given=given, record=recorder)
        result.artifact, result.precision, result.ln = context["artifact"]["path"], precision, ln
        result.budget = gate.to_dict()
        if not result.passed or layers:
            result.notes.append("layers: not compared for a served model (its intermediate tensors stay on the "
                                "server); run check --layers on the ONNX file it serves")
        _given_and_saved(result, given, recorder, save_outputs, model, seed)
        return _with_plots(result, plots, histograms)
    export_notes = []
    with tempfile.TemporaryDirectory(prefix="lndeploy-check-") as tmp:
        if artifact is None:
            from lndeploy.pipeline import export

            if gate.pending:  # the export keeps every dynamic dim: the inputs compare() will draw
                gate.measure(spec, runnable_schedule(spec, samples, seed, {}, [], given))
            artifact = os.path.join(tmp, "model.onnx")
            export_notes = export(spec, artifact, ln=ln, precision=precision, opset=opset, debug=debug,
                                  atol=gate.limit, rtol=tol.rtol).notes
        digest = reports.sha256(artifact)
        context["artifact"]["sha256"] = digest
        result = compare(spec, str(artifact), backend, tol, samples, seed, debug, on_sample=on_sample, budget=gate,
                         plugin_impl=plugin_impl, given=given, record=recorder)
        if not result.passed or layers:  # layers are judged against the same gate as the outputs
            _localise(spec, str(artifact), backend, gate.tolerance, result, layers or "norms", samples, seed, debug,
                      {"plugin_impl": plugin_impl} if plugin_impl else {}, given)
    result.notes[:0] = export_notes
    if onnx is not None or engine is not None:
        result.notes += _unstable_weights_note(model, spec, result)
    result.artifact = str(onnx or engine or f"(exported in memory: ln={ln}, {precision}, opset {opset})")
    result.precision, result.ln, result.sha256 = precision, ln, digest
    result.plugin_impl = _plugin_impl(ln, backend, plugin_impl)
    result.budget = gate.to_dict()
    _given_and_saved(result, given, recorder, save_outputs, model, seed)
    return _with_plots(result, plots, histograms)


def _given_and_saved(result: CheckResult, given, recorder, save_outputs, model, seed: int) -> None:
    """Say which inputs were given; write the golden folder (``--save-outputs``)."""
    from lndeploy.checker import golden
    from lndeploy.checker import report as reports

    if given:
        result.notes.append(f"inputs as given: {given[0]} ({len(result.samples)} sets)")
    if recorder is not None:
        golden.save(save_outputs, recorder, result, model=reports.model_reference(model), seed=seed,
                    input_source=given[0] if given else "generated")


def _with_plots(result: CheckResult, plots, histograms) -> CheckResult:
    if plots is not None:
        from lndeploy.checker.plots import write

        result.plots = write(plots, result, histograms)
    return result


def _localise(spec, artifact, backend, tol, result, mode, samples, seed, debug, session_options: dict,
              given=None) -> None:
    """Which layer diverges (``lndeploy.checker.layers``). A failure here is a note: it must not hide
    the verdict of the comparison that already ran."""
    from lndeploy.checker.layers import localise

    try:
        localise(spec, artifact, backend, tol, result, mode=mode, samples=samples, seed=seed,
                 session_options=session_options, given=given)
    except Exception as err:
        if debug:
            raise
        result.notes.append(f"layers: could not be compared ({type(err).__name__}: {first_line(err)[:200]})")


def _plugin_option(plugin_impl: str | None, backend: str | None, not_onnx: bool, ln: str) -> str:
    """``--plugin-impl``, checked: ``kernel`` runs inside the reference evaluator (the default backend
    then), so it needs an ONNX artifact with plugin nodes (an engine's plugin is TensorRT's, a served
    model's is the server's)."""
    plugin_impl = plugin_impl or "onnx"
    if plugin_impl not in ("onnx", "kernel"):
        raise BadInputError(f"--plugin-impl must be onnx or kernel, got {plugin_impl!r}")
    if plugin_impl == "onnx":
        return plugin_impl
    if not_onnx or backend not in (None, "onnx-reference"):
        raise BadInputError("--plugin-impl kernel runs lndeploy's Triton kernel inside ONNX's reference evaluator: "
                            "use it with --backend onnx-reference (the default then) and an ONNX artifact")
    if ln != "plugin":
        raise BadInputError("--plugin-impl kernel: the artifact has no plugin nodes for the kernel to run; "
                            "export with --ln plugin")
    return plugin_impl


def _plugin_impl(ln: str, backend: str, plugin_impl: str = "onnx") -> str | None:
    """What runs plugin nodes: TensorRT's registered plugin in an engine; lndeploy's Triton kernel under
    the Triton interpreter with ``--plugin-impl kernel``; elsewhere the model-local function of standard
    ONNX ops that lndeploy adds (lndeploy.plugin_spec), which ONNX Runtime and the reference evaluator
    inline."""
    if ln != "plugin":
        return None
    if backend == "tensorrt":
        return "tensorrt"
    return "kernel" if plugin_impl == "kernel" else "onnx-function"


def _unstable_weights_note(model, spec, result) -> list[str]:
    """A failed check of an artifact exported in another process often means the model file builds
    different weights every time (an unseeded ``build()``): build it once more and compare. Only on
    failure, and only for a model file (an in-memory module is the very one that was exported)."""
    if result.passed or result.error or not isinstance(model, (str, os.PathLike)):
        return []
    import torch

    from lndeploy import modelfile

    again = modelfile.load(model).module.state_dict()
    for name, tensor in spec.module.state_dict().items():
        other = again.get(name)
        if other is None or other.shape != tensor.shape or not torch.equal(other, tensor):
            return [f"{model} builds different weights on each call ({name!r} differs between two builds): "
                    "an artifact exported in another process cannot match it; seed build() "
                    "(torch.manual_seed) or load saved weights"]
    return []


def _artifact_form(artifact, ln, precision, opset) -> tuple[str | None, str | None]:
    """The artifact's own LN form and precision; an option that says otherwise is a usage error."""
    from lndeploy.inspection import artifact_form

    form = artifact_form(artifact)
    for option, given, found in (("--ln", ln, form.get("ln")), ("--precision", precision, form.get("precision")),
                                 ("--opset", opset, form.get("opset"))):
        if given is not None and found is not None and given != found:
            raise BadInputError(f"{option} {given} contradicts the artifact, which is {found}: export options "
                                f"apply only when check exports the model itself")
    return ln or form.get("ln"), precision or form.get("precision")
