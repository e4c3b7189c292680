"""``build_engine``: ONNX -> serialized TensorRT engine plus its JSON sidecar, both written atomically.

Precision comes from the ONNX types (networks are strongly typed), so there are no precision flags
here: export with ``--precision fp16`` to get an fp16 engine. TensorRT-RTX builds on a machine
without a GPU for explicit compute capabilities; full TensorRT builds for the GPU it runs on.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from lndeploy import plugin_spec
from lndeploy.backends.tensorrt import network as net
from lndeploy.backends.tensorrt import shapes as shp
from lndeploy.backends.tensorrt import sidecar
from lndeploy.backends.tensorrt.interrupts import signals_held
from lndeploy.backends.tensorrt.progress import make_monitor
from lndeploy.backends.tensorrt.runtime import load
from lndeploy.trt_env import cuda_gpu, require_gpu
from lndeploy.errors import BadInputError, UnavailableError
from lndeploy.fileio import atomic_path, file_sha256, write_bytes_atomic
from lndeploy.onnxfile import op_counts, primitive_norm_hint

# Without a GPU, TensorRT-RTX cannot build for CURRENT; these cover Ampere, Ada and Blackwell RTX cards.
DEFAULT_RTX_ARCHS = ("sm80", "sm86", "sm89", "sm120")


@dataclass
class BuildResult:
    engine_path: str
    sidecar_path: str
    runtime: str
    runtime_version: str
    targets: dict
    profile: dict  # {"dims": {label: [min, opt, max]}, "inputs": {name: {min, opt, max}}}
    precision: dict
    network: dict  # layer counts, LayerNorm layers with types, loops
    engine_layers: list | None
    seconds: float
    size_bytes: int
    notes: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)  # the sidecar as written


def build_engine(onnx_path, output, *, runtime: str | None = None, shapes: dict | None = None,
                 arch=None, timing_cache=None, progress: bool = True, model=None) -> BuildResult:
    """Build ``output`` (the engine) and ``output + ".json"`` (its sidecar) from ``onnx_path``.

    ``runtime``: ``tensorrt``, ``tensorrt-rtx`` or None (full TensorRT if installed, else RTX).
    ``shapes``: {dim label or input name: (min, opt, max)}, see :mod:`.shapes`; ``model``: a model file
    whose example inputs give opt sizes. ``arch``: TensorRT-RTX compute capabilities ("sm86,sm120").
    ``timing_cache``: a file full TensorRT reads and updates. ``progress``: show build progress on stderr.
    """
    onnx_path, output = Path(onnx_path), Path(output)
    from lndeploy.outpaths import model_file, prepare_outputs

    # fail before a long build, not after it; the timing cache is read and rewritten on purpose
    prepare_outputs({"-o": output, "the sidecar": sidecar.sidecar_path(output), "--timing-cache": timing_cache},
                    {"IN.onnx": onnx_path, "--model": model_file(model)})
    if arch and runtime == "tensorrt":
        raise BadInputError("--arch applies to TensorRT-RTX; full TensorRT builds for the GPU it runs on")
    rt = load(runtime)
    if not rt.is_rtx:
        if arch:
            raise BadInputError("--arch applies to TensorRT-RTX; full TensorRT (chosen as installed) builds "
                                "for the GPU it runs on; add --runtime tensorrt-rtx")
        gpu = require_gpu("building an engine with full TensorRT")
    with signals_held():  # TensorRT's logger calls back into Python while it parses
        parsed = net.parse_network(onnx_path, rt, verbose=True)
    notes = list(parsed.notes)
    examples = _examples(model) if model is not None else None
    profile = shp.plan_profile(shp.onnx_inputs(parsed.model), shapes, examples)
    config = parsed.builder.create_builder_config()
    _add_profile(parsed, config, profile)
    targets = _set_rtx_targets(rt, config, arch) if rt.is_rtx else {"gpu": gpu}
    cache = _load_timing_cache(rt, config, timing_cache, notes)
    config.profiling_verbosity = rt.trt.ProfilingVerbosity.DETAILED
    mark = len(parsed.logger.messages)
    start = time.perf_counter()
    with signals_held() as interrupted:  # a Ctrl-C cancels the build through the monitor, then is raised
        monitor = make_monitor(rt.trt, show=progress, cancelled=lambda: bool(interrupted))
        if monitor is not None and hasattr(config, "progress_monitor"):
            config.progress_monitor = monitor
        serialized = parsed.builder.build_serialized_network(parsed.network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        errors = parsed.logger.errors()[-3:]
        raise BadInputError(f"{rt.label} could not build an engine from {onnx_path}: "
                            f"{net.one_line(errors[-1]) if errors else 'no reason given'}{_profile_hint(profile)}")
    layers = parsed.layers()
    ops = op_counts(parsed.model)
    if not (ops.get("LayerNormalization") or ops.get(plugin_spec.OP_TYPE)) and primitive_norm_hint(ops):
        notes.append(primitive_norm_hint(ops))  # it builds, but as a dozen layers per LayerNorm
    facts = _facts(onnx_path, parsed, rt, targets, profile, layers, seconds,
                   sidecar.parse_engine_layers(parsed.logger.messages[mark:]))
    _write(output, serialized, facts)
    if cache is not None:
        write_bytes_atomic(timing_cache, memoryview(config.get_timing_cache().serialize()))
    return BuildResult(str(output), str(sidecar.sidecar_path(output)), rt.name, rt.version, targets, profile,
                       facts["precision"], facts["network"], facts["engine_layers"], seconds,
                       facts["engine"]["size_bytes"], notes, facts)


def _profile_hint(profile: dict) -> str:
    """The profile a failed build used: a model whose graph fixes a size it declares dynamic (a
    reshape to the export's length) fails only at the default sizes, and --shapes is the way out."""
    if not profile["dims"]:
        return ""
    ranges = ", ".join(f"{k} {v[0]}..{v[2]} (opt {v[1]})" for k, v in profile["dims"].items())
    return f" [profile used: {ranges}; set sizes with --shapes NAME:MIN,OPT,MAX]"


def _examples(model) -> dict:
    from lndeploy import modelfile

    spec = model if isinstance(model, modelfile.ModelSpec) else modelfile.load(model)
    return {name: tuple(int(n) for n in tensor.shape) for name, tensor in spec.inputs.items()}


def _add_profile(parsed, config, profile: dict) -> None:
    network, opt = parsed.network, parsed.builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        ranges = profile["inputs"].get(tensor.name)
        if ranges is None:
            raise BadInputError(f"network input {tensor.name!r} is not a graph input of the ONNX file")
        if tensor.is_shape_tensor:
            raise BadInputError(f"input {tensor.name!r} is a shape tensor, which lndeploy build does not support")
        opt.set_shape(tensor.name, ranges["min"], ranges["opt"], ranges["max"])
    config.add_optimization_profile(opt)


def parse_arch(arch, supported) -> list[str]:
    """``"sm80,sm86"`` / ``"80,8.6"`` / a list -> ["sm80", "sm86"]; each must be in ``supported``."""
    items = arch.split(",") if isinstance(arch, str) else list(arch)
    out = []
    for item in (str(i).strip().lower() for i in items):
        if not item:
            continue
        if item == "current":
            out.append(item)
            continue
        digits = re.sub(r"^sm_?", "", item).replace(".", "")
        name = f"sm{digits}"
        if name not in supported:
            raise BadInputError(f"--arch {item!r} is not a compute capability this TensorRT-RTX builds for; "
                                f"choose from {', '.join(supported)} or current")
        out.append(name)
    if not out:
        raise BadInputError("--arch is empty; name compute capabilities, e.g. --arch sm86,sm120")
    return list(dict.fromkeys(out))


def _set_rtx_targets(rt, config, arch) -> dict:
    members = rt.trt.ComputeCapability.__members__
    supported = [k.lower() for k in members if k.startswith("SM")]
    gpu = cuda_gpu()
    default = [f"sm{gpu['sm']}"] if gpu else list(DEFAULT_RTX_ARCHS)
    archs = parse_arch(arch, supported) if arch is not None else default  # --arch "" is an error, not the default
    if "current" in archs:
        if gpu is None:
            raise UnavailableError("--arch current needs a GPU; name the compute capabilities instead "
                                   f"(e.g. --arch {','.join(DEFAULT_RTX_ARCHS)})")
        archs = list(dict.fromkeys(f"sm{gpu['sm']}" if a == "current" else a for a in archs))
    for name in archs:
        if name not in supported:
            raise BadInputError(f"TensorRT-RTX {rt.version} cannot build for {name} (this GPU); "
                                f"it supports {', '.join(supported)}")
    config.num_compute_capabilities = len(archs)
    for i, name in enumerate(archs):
        config.set_compute_capability(members[name.upper()], i)
    return {"compute_capabilities": archs}


def _load_timing_cache(rt, config, path, notes: list):
    if path is None:
        return None
    if rt.is_rtx:
        notes.append("--timing-cache ignored: TensorRT-RTX has no timing cache (its timing-cache calls are no-ops)")
        return None
    data = Path(path).read_bytes() if os.path.isfile(path) else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise BadInputError(f"timing cache {path} does not match this TensorRT or GPU; delete it to start anew")
    notes.append(f"timing cache {path}: {'reused' if data else 'created'}")
    return cache


def _facts(onnx_path, parsed, rt, targets, profile, layers, seconds, engine_layers) -> dict:
    from lndeploy import __version__
    from lndeploy.onnxfile import opset_version

    summary = net.summarize(layers)
    plugins = None
    if parsed.plugin_nodes:
        from lndeploy import plugin_spec

        plugins = {"ids": [f"{plugin_spec.PLUGIN_NAMESPACE}::{plugin_spec.OP_TYPE}"], "nodes": parsed.plugin_nodes,
                   "mode": "python-creator" if rt.is_rtx else "aot-kernel-in-engine"}
    return {
        "format": sidecar.FORMAT,
        "lndeploy_version": __version__,
        "source_onnx": {"path": str(onnx_path), "sha256": file_sha256(onnx_path),
                        "opset": opset_version(parsed.model)},
        "runtime": {"name": rt.name, "version": rt.version},
        "targets": targets,
        "profiles": [profile["inputs"]],
        "dims": profile["dims"],
        "inputs": [{"name": i.name, "dims": list(i.dims)} for i in shp.onnx_inputs(parsed.model)],
        "precision": {**sidecar.onnx_precision(parsed.model), "layernorm": summary["layernorm_layers"]},
        "plugins": plugins,
        "network": {k: v for k, v in summary.items() if k != "layernorm_layers"},  # those are under precision
        "engine_layers": engine_layers,
        "build_seconds": round(seconds, 3),
    }


def _write(output: Path, serialized, facts: dict) -> None:
    """Engine and sidecar: both written beside their targets, the engine renamed into place last."""
    import hashlib
    import json

    data = memoryview(serialized)
    facts["engine"] = {"file": output.name, "size_bytes": data.nbytes, "sha256": hashlib.sha256(data).hexdigest()}
    with atomic_path(output) as engine_tmp:
        with atomic_path(sidecar.sidecar_path(output)) as json_tmp:
            with open(engine_tmp, "wb") as f:
                f.write(data)
            json_tmp.write_text(json.dumps(facts, indent=2) + "\n")
