"""Where parity breaks: intermediate tensors of the artifact against the PyTorch modules they came from.

``check --layers norms|all``, and by itself when a check fails (README "How check decides"). The ONNX
side (:mod:`lndeploy.checker.taps`): a copy of the graph that also outputs the compared tensors, run
on the check's backend. The PyTorch side: forward hooks on the modules the exporter's metadata names,
recording what enters and leaves each call. Both run one input set, the worst output's worst sample;
every pair is compared under the check's tolerance (:func:`lndeploy.parity.compare_arrays`).

The result names the first normalization, in the graph's topological order, whose output is over
tolerance, with the error of the tensor that feeds it: input fine and output off says that layer
computes differently; input already off says the error arrived from upstream. Sites without metadata
(other exporters, Scan bodies) pair with the calls of PyTorch's normalization modules in execution
order, when their counts agree; a Scan body's site takes every step's call, stacked on axis 0.
"""

from __future__ import annotations

import itertools
import os
import re

import numpy as np

from lndeploy.checker import taps

_NORM_CLASS = re.compile(r"(layer|rms)_?norm", re.IGNORECASE)


def localise(spec, artifact: str, backend: str, tol, result, *, mode: str = "norms", samples=None,
             seed: int = 0, session_options: dict | None = None, given=None) -> None:
    """Fill ``result.first_divergence``, ``result.layers`` and notes (a ``CheckResult`` whose outputs
    were compared). ``mode``: ``norms`` or ``all``. ``session_options``: as the check's own session
    (``plugin_impl``), so the layers run on what the outputs ran on. ``given``: the given input sets
    the check ran on (``compare.given_inputs``), so the worst sample is replayed from them."""
    if backend == "tensorrt":
        result.notes.append("layers: not compared for an engine (TensorRT does not hand out its intermediate "
                            "tensors here); run check --layers on the ONNX file the engine was built from")
        return
    worst = result.worst
    if result.error or worst is None:
        return
    index = worst[1].get("worst_sample") or 0
    from lndeploy.onnxfile import load_model

    model = load_model(artifact)
    norm_modules = {path for path, m in spec.module.named_modules() if path and is_norm_module(m)}
    types = taps.float_types(model)
    sites = taps.find_sites(model, mode, norm_modules, types)
    if not sites:
        result.notes.append("layers: the artifact has no normalization node to compare"
                            + ("" if mode == "all" else "; --layers all compares every module"))
        return
    sizes, onnx_values, calls = _run_both(spec, model, sites, types, backend, index, samples, seed,
                                          session_options or {}, given)
    pairs, notes = pair(sites, calls, onnx_values)
    for site, _ in pairs:
        site.source = site.source or calls["sources"].get(site.module)
    rows = [row for row in (_compare(site, values, tol) for site, values in pairs) if row is not None]
    result.layers = [row for row, _, _ in rows]
    result.first_divergence = _first(rows, norm=True)
    result.notes += notes + [f"layers: {len(rows)} compared on sample {index} (sizes {sizes}), the worst "
                             f"output's worst sample"] + _explain(result, rows, mode)


def _explain(result, rows: list, mode: str) -> list[str]:
    """Notes that point past the first divergence: the module before it that is already off, or,
    where no normalization is, the first module that is."""
    notes = []
    first = result.first_divergence
    if first and first.get("input_over_fraction"):
        culprit = _first(rows[:next(i for i, (row, _, _) in enumerate(rows) if row["node"] == first["node"])],
                         norm=False)
        notes.append(
            f"layers: the error reached {_name(first)} through its input; " + (
                f"the first module over tolerance is {_name(culprit)} (max abs {culprit['max_abs']:.3g})"
                if culprit else "--layers all compares the modules before it" if mode != "all" else
                "no module before it is (the error arises between modules)"))
    if first is None and not result.passed:
        other = _first(rows, norm=False)
        notes.append("layers: no normalization is over tolerance" + (
            f"; the first module that is: {_name(other)}, max abs {other['max_abs']:.3g}" if other else
            ("" if mode == "all" else "; --layers all compares every module")))
    return notes


def is_norm_module(module) -> bool:
    import torch

    norms = tuple(c for c in (torch.nn.LayerNorm, getattr(torch.nn, "RMSNorm", None)) if c is not None)
    return isinstance(module, norms) or bool(_NORM_CLASS.search(type(module).__name__))


def _run_both(spec, model, sites, types, backend, index, samples, seed, session_options: dict, given=None):
    """One input set through the instrumented graph and through PyTorch with hooks."""
    from lndeploy.checker.compare import runnable_schedule
    from lndeploy.checker.signature import pair_inputs
    from lndeploy.session import Session

    instrumented, tapped = taps.instrument(model, sites, types)
    with Session(instrumented, backend=backend, **session_options) as session:
        pairing = pair_inputs(spec, session.inputs)
        schedule = runnable_schedule(spec, samples, seed, pairing.pinned, [], given)
        sizes, feed = next(itertools.islice(schedule, index, None))
        renamed = {pairing.names.get(k, k): v for k, v in feed.items()}
        values = session.run({k: v for k, v in renamed.items() if k in session.input_names})
    values.update(renamed)
    onnx_values = {key: values.get(name) for key, name in tapped.items()}
    wanted = {s.module for s in sites if s.module and s.own} | {p for p, m in spec.module.named_modules()
                                                                  if p and is_norm_module(m)}
    return sizes, onnx_values, _torch_calls(spec, feed, wanted)


def _torch_calls(spec, feed: dict, paths: set) -> dict:
    """``{"by_module": path -> [(input, output)], "order": [(path, (input, output))], "sources": path ->
    file:line}`` of one forward; ``order`` holds the normalization modules' calls only."""
    import torch

    by_module: dict[str, list] = {}
    order: list = []
    sources: dict[str, str | None] = {}
    handles = []
    modules = dict(spec.module.named_modules())

    def record(path):
        norm = is_norm_module(modules[path])

        def hook(module, args, kwargs, output):
            if path not in sources:
                sources[path] = _caller()
            call = (_array(_first_tensor([*args, *kwargs.values()])), _array(_first_tensor([output])))
            by_module.setdefault(path, []).append(call)
            if norm:  # what sites without metadata pair with, in execution order
                order.append((path, call))
        return hook

    try:
        for path in sorted(paths):
            if path in modules:
                handles.append(modules[path].register_forward_hook(record(path), with_kwargs=True))
        with torch.inference_mode():
            spec.call({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items()})
    finally:
        for handle in handles:
            handle.remove()
    return {"by_module": by_module, "order": order, "sources": sources}


def _caller() -> str | None:
    """``file:line`` of the code that called the hooked module: the first frame outside torch
    (the source of sites whose metadata has none, like a Scan body's)."""
    import sys

    torch_dir = f"{os.sep}torch{os.sep}"
    frame = sys._getframe(1)
    while frame is not None and (torch_dir in frame.f_code.co_filename or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    return None if frame is None else f"{taps.short_path(frame.f_code.co_filename)}:{frame.f_lineno}"


def _first_tensor(values):
    import torch

    for value in values:
        if isinstance(value, torch.Tensor):
            return value
        if isinstance(value, (tuple, list, dict)):
            found = _first_tensor(value.values() if isinstance(value, dict) else value)
            if found is not None:
                return found
    return None


def _array(tensor):
    if tensor is None:
        return None
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy()


def pair(sites: list, calls: dict, onnx_values: dict) -> tuple[list, list[str]]:
    """``[(site, (onnx_in, onnx_out, torch_in, torch_out))]`` and notes on what could not be paired.

    A site the metadata names takes the next call of its module (a module called twice has two
    sites). The others take, in order, the calls of normalization modules the metadata names nowhere;
    a Scan body's k sites take k x steps calls, site j every k-th from j."""
    by_module, used, pairs = calls["by_module"], {}, []
    for site in sites:
        if site.module not in by_module or not site.own:
            continue
        module_calls, k = by_module[site.module], used.get(site.module, 0)
        used[site.module] = k + 1
        # a module site (--layers all) of a module called twice: which call its boundary is, is not known
        if k < len(module_calls) and (site.norm or len(module_calls) == 1):
            pairs.append((site, _values(site, onnx_values, *module_calls[k])))
    stream = [(path, call) for path, call in calls["order"] if path not in used]
    waiting = [s for s in sites if s.norm and s.module is None]
    by_order, cursor = [], 0
    for site in waiting:
        group = [s for s in waiting if s.scan is not None and s.scan == site.scan] or [site]
        if site is not group[0]:
            continue  # paired with its Scan's first site
        taken = _by_order(group, stream[cursor:], onnx_values)
        if taken is None:
            break
        by_order += taken[0]
        cursor += taken[1]
    notes = []
    if waiting and (len(by_order) != len(waiting) or cursor != len(stream)):
        for site, _ in by_order:
            site.module = None
        by_order = []
        notes.append(f"layers: {len(waiting)} normalization nodes without exporter metadata could not be paired "
                     f"by order with PyTorch's {len(stream)} calls of normalization modules: not compared")
    functional = [s.node for s in sites if not s.own]
    if functional:
        notes.append(f"layers: {len(functional)} normalization nodes come from a functional call inside a bigger "
                     f"module (no module of their own to hook): not compared: {functional[:5]}")
    unknown = sorted({s.module for s in sites if s.module and s.own and s.module not in by_module and s.norm}
                     - {s.module for s, _ in by_order})
    if unknown:
        notes.append(f"layers: modules named by the artifact's metadata but not run by the model: {unknown}")
    return sorted(pairs + by_order, key=lambda p: p[0].order), notes


def _by_order(group: list, stream: list, onnx_values: dict):
    """Pair ``group`` (one main-graph site, or a Scan body's sites) with the next calls of ``stream``;
    ``(pairs, calls used)`` or None when the stream runs out or the calls do not repeat per step."""
    first = onnx_values.get((group[0].scan, group[0].output))
    steps = 1 if group[0].scan is None else (np.shape(first)[0] if first is not None and np.ndim(first) else 0)
    need = len(group) * steps
    if steps == 0 or need > len(stream):
        return None
    pairs = []
    for j, site in enumerate(group):
        mine = stream[j:need:len(group)]
        if len({path for path, _ in mine}) != 1:
            return None
        inputs, outputs = zip(*(call for _, call in mine))
        if site.scan is not None:
            inputs, outputs = (_stack(inputs), _stack(outputs))
        else:
            inputs, outputs = inputs[0], outputs[0]
        pairs.append((site, _values(site, onnx_values, inputs, outputs)))
    for (site, _), j in zip(pairs, range(len(group))):
        site.module = stream[j][0]
    return pairs, need


def _stack(arrays):
    return None if any(a is None for a in arrays) else np.stack(arrays)


def _values(site, onnx_values: dict, torch_in, torch_out) -> tuple:
    return onnx_values.get((site.scan, site.input)), onnx_values.get((site.scan, site.output)), torch_in, torch_out


def _compare(site, values, tol):
    """``(row, site, passed)``, or None when the tensors do not line up (a heuristic module boundary
    of ``--layers all`` that is not what the module returns). In a Scan body the input is judged at
    the first step whose output is over tolerance: later steps' inputs carry the error back round."""
    from lndeploy import parity

    onnx_in, onnx_out, torch_in, torch_out = values
    if onnx_out is None or torch_out is None or np.shape(onnx_out) != np.shape(torch_out):
        return None
    out = parity.compare_arrays(onnx_out, torch_out, tol)
    step = None
    if site.scan is not None and not out.passed and np.ndim(onnx_out):
        step = next((t for t in range(len(onnx_out))
                     if not parity.compare_arrays(onnx_out[t], torch_out[t], tol).passed), None)
    within = None
    if onnx_in is not None and torch_in is not None and np.shape(onnx_in) == np.shape(torch_in):
        pick = (lambda a: a[step]) if step is not None else (lambda a: a)
        within = parity.compare_arrays(pick(onnx_in), pick(torch_in), tol)
    row = {"node": site.node, "module": site.module, "max_abs": out.max_abs, "over_fraction": out.over_fraction,
           "source": site.source, "kind": "norm" if site.norm else "module",
           "input_max_abs": within.max_abs if within else None,
           "input_over_fraction": within.over_fraction if within else None}
    if step is not None:
        row["step"] = step  # of the Scan: the first whose output is over; the input is judged there
    return row, site, out.passed


def _first(rows: list, norm: bool) -> dict | None:
    for row, site, passed in rows:
        if not passed and site.norm == norm:
            return {key: row[key] for key in ("node", "module", "source", "max_abs", "input_max_abs",
                                               "input_over_fraction", "step") if key in row}
    return None


def _name(entry: dict) -> str:
    where = entry.get("module") or entry["node"]
    return f"{where} ({entry['source']})" if entry.get("source") else where


def describe(first: dict) -> str:
    """One line: where it diverges, and whether the error was made there or arrived there."""
    line = f"first divergence: {_name(first)}: max abs {first['max_abs']:.3g} at its output"
    if first.get("step") is not None:
        line += f" (first over tolerance at scan step {first['step']}, where its input is judged)"
    if first.get("input_max_abs") is None:
        return line + "; its input could not be compared"
    if first.get("input_over_fraction"):
        return (line + f", and its input is already off (max abs {first['input_max_abs']:.3g}): the error "
                       "arrived here from upstream")
    return (line + f", its input is within tolerance (max abs {first['input_max_abs']:.3g}): this layer computes "
                   "differently from PyTorch")


def table(layers: list, first: dict | None, limit: int = 12) -> list[str]:
    """The per-layer table, shortened around the first divergence for the terminal."""
    if not layers:
        return []
    at = next((i for i, r in enumerate(layers) if first and r["node"] == first["node"]), 0)
    start = max(0, min(at - limit // 2, len(layers) - limit))
    shown = layers[start:start + limit]
    width = max(len(str(r["module"] or r["node"])) for r in shown)
    lines = [f"  layers (max abs error, fraction of elements over tolerance; * first over, in graph order):"]
    if start:
        lines.append(f"    ... {start} earlier")
    for row in shown:
        mark = "*" if first and row["node"] == first["node"] else " "
        lines.append(f"  {mark} {str(row['module'] or row['node']):<{width}}  {_num(row['max_abs'])}  "
                     f"{row['over_fraction']:.1%}  {row['node']}")
    if start + limit < len(layers):
        lines.append(f"    ... {len(layers) - start - limit} more in the report")
    return lines


def _num(value) -> str:
    return "     n/a" if value is None or value != value else f"{value:8.2e}"
