"""``lndeploy package``: Triton Inference Server model repositories from lndeploy artifacts.

One folder per artifact (docs/serving.md, "Repository layout")::

    REPO/NAME/config.pbtxt        platform onnxruntime_onnx | tensorrt_plan, inputs/outputs, batching
    REPO/NAME/1/model.onnx        (or model.plan, with its sidecar model.plan.json)

``config.pbtxt`` is the text form of Triton's ``ModelConfig`` protobuf. It is made as that protobuf
(tritonclient ships its classes), written, parsed back from the written text, and linted against the
artifact by an independent reading of the rules (:func:`lint`) before the folder is renamed into place:
a folder that exists in REPO is always complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lndeploy.errors import BadInputError, UnavailableError
from lndeploy.fileio import current_umask
from lndeploy.serving import signature as sig_mod

PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "plan": ("tensorrt_plan", "model.plan")}
KINDS = {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}
ACCELERATORS = ("none", "cuda", "tensorrt")


@dataclass
class PackagedModel:
    name: str
    platform: str
    folder: Path
    max_batch_size: int
    config: object  # the ModelConfig protobuf parsed back from config.pbtxt
    notes: list = field(default_factory=list)


def model_config_class():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as err:
        raise UnavailableError("writing Triton model configs needs tritonclient: pip install "
                               "'tritonclient[grpc]' (or lndeploy's serve extra)") from err
    return model_config_pb2


def package(artifacts, triton_repo, *, max_batch: int = 8, instances: int = 1, device: str = "auto",
            accelerator: str = "none", fp16: bool = False, queue_delay_us: int = 100) -> list[PackagedModel]:
    """Write one Triton model folder per artifact into ``triton_repo`` (created if missing).

    ``max_batch``: Triton's ``max_batch_size`` when every input and output starts with the same dynamic
    dim (else 0, no batching); for engines at most the profile's max. ``instances``/``device``: the
    ``instance_group``. ``accelerator`` (ONNX only): ``cuda`` or ``tensorrt`` (ORT's TensorRT EP, with
    ``fp16``: FP16 precision and its LayerNorm fp32 fallback). The model name is the file's stem."""
    artifacts = [Path(a) for a in artifacts]
    _check_options(artifacts, max_batch, instances, device, accelerator, fp16, queue_delay_us)
    repo = Path(triton_repo)
    if repo.exists() and not repo.is_dir():
        raise BadInputError(f"--triton-repo {repo} is a file, not a folder")
    signatures = [sig_mod.read(a) for a in artifacts]  # every artifact read before anything is written
    repo.mkdir(parents=True, exist_ok=True)
    done = []
    for sig in signatures:
        if sig.kind == "plan" and device == "cpu":
            raise BadInputError(f"{sig.path}: a TensorRT engine runs on a GPU only; drop --device cpu")
        config, notes = build_config(sig, max_batch, instances, device, accelerator, fp16, queue_delay_us)
        done.append(_commit(sig, config, repo, notes))
    return done


def _check_options(artifacts, max_batch, instances, device, accelerator, fp16, queue_delay_us) -> None:
    if not artifacts:
        raise BadInputError("no artifact given")
    stems = [a.stem for a in artifacts]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise BadInputError(f"two artifacts would both be model {twice[0]!r} (the model name is the file's stem)")
    if max_batch < 0 or instances < 1 or queue_delay_us < 0:
        raise BadInputError("--max-batch must be >= 0, --instances >= 1 and --queue-delay-us >= 0")
    if device not in KINDS:
        raise BadInputError(f"--device {device!r}: choose {', '.join(KINDS)}")
    if accelerator not in ACCELERATORS:
        raise BadInputError(f"--accelerator {accelerator!r}: choose {', '.join(ACCELERATORS)}")
    if fp16 and accelerator != "tensorrt":
        raise BadInputError("--fp16 sets the precision of ONNX Runtime's TensorRT EP: use it with --accelerator tensorrt")


def build_config(sig, max_batch, instances, device, accelerator, fp16, queue_delay_us):
    """The ``ModelConfig`` for one artifact, and notes on what was decided and why."""
    pb = model_config_class()
    platform, _ = PLATFORMS[sig.kind]
    config = pb.ModelConfig(name=sig.path.stem, platform=platform)
    notes = []
    batch = sig.batch_label()
    batch_size = 0
    if batch is not None and max_batch > 0:
        batch_size = max_batch
        if sig.kind == "plan":
            low, _, high = sig.ranges.get(batch, (1, 1, max_batch))
            batch_size = min(max_batch, high) if low == 1 else 0
            if low != 1:
                notes.append(f"profile batch range starts at {low}: Triton batches from 1, so batching is off")
    elif batch is None:
        notes.append("inputs and outputs do not all start with one dynamic dim: max_batch_size 0 (no batching)")
    config.max_batch_size = batch_size
    for tensors, field_ in ((sig.inputs, config.input), (sig.outputs, config.output)):
        for tensor in tensors:
            dims = tensor.dims[1:] if batch_size else tensor.dims
            field_.add(name=tensor.name, data_type=pb.DataType.Value(tensor.triton_type),
                       dims=[sig.size(d) for d in dims])
    if batch_size:
        config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    config.instance_group.add(count=instances, kind=pb.ModelInstanceGroup.Kind.Value(KINDS[device]))
    if sig.kind == "onnx" and accelerator != "none":
        accel = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name=accelerator)
        if accelerator == "tensorrt":
            accel.parameters["precision_mode"] = "FP16" if fp16 else "FP32"
            if fp16:  # the TensorRT EP's own guard for LN statistics (docs/serving.md)
                accel.parameters["trt_layer_norm_fp32_fallback"] = "true"
    notes += _plugin_notes(sig)
    return config, notes


def _plugin_notes(sig) -> list[str]:
    if not sig.plugin_nodes:
        return []
    if sig.kind == "onnx":
        return [f"{sig.plugin_nodes} LayerNorm plugin nodes: model.onnx carries their model-local reference "
                "function, so Triton's ONNX Runtime backend runs them with no plugin library"]
    if sig.plugin_mode == "python-creator":
        return [f"{sig.plugin_nodes} plugin layers call lndeploy's Python plugin creator: the server must "
                "register it before loading the engine (docs/serving.md, 'Plugins')"]
    return [f"{sig.plugin_nodes} plugin layers with their kernel in the engine (docs/serving.md, 'Plugins')"]


def lint(config, sig) -> list[str]:
    """Every way ``config`` disagrees with the artifact; [] when it matches. Written from Triton's
    rules, not from :func:`build_config`: names, types, rank, -1 exactly where a dim is dynamic,
    the batch dim left out only when every tensor starts with it, engine dims within the profile."""
    pb = model_config_class()
    problems = []
    platform, _ = PLATFORMS[sig.kind]
    if config.platform != platform:
        problems.append(f"platform {config.platform!r}, the artifact needs {platform!r}")
    if config.name != sig.path.stem:
        problems.append(f"name {config.name!r} is not the folder's {sig.path.stem!r}")
    batched = config.max_batch_size > 0
    if batched and sig.batch_label() is None:
        problems.append("max_batch_size > 0 but not every tensor starts with one dynamic batch dim")
    if batched and sig.kind == "plan":
        low, _, high = sig.ranges.get(sig.batch_label(), (None, None, None))
        if low != 1 or config.max_batch_size > high:
            problems.append(f"max_batch_size {config.max_batch_size} outside the profile's batch range {low}..{high}")
    if config.HasField("dynamic_batching") and not batched:
        problems.append("dynamic_batching needs max_batch_size > 0")
    for label, declared, actual in (("input", config.input, sig.inputs), ("output", config.output, sig.outputs)):
        if [d.name for d in declared] != [t.name for t in actual]:
            problems.append(f"{label}s {[d.name for d in declared]} are not the artifact's {[t.name for t in actual]}")
            continue
        for entry, tensor in zip(declared, actual):
            if pb.DataType.Name(entry.data_type) != tensor.triton_type:
                problems.append(f"{label} {tensor.name!r} is {pb.DataType.Name(entry.data_type)}, "
                                f"the artifact's is {tensor.triton_type}")
            full = ([-1] if batched else []) + list(entry.dims)
            if len(full) != len(tensor.dims):
                problems.append(f"{label} {tensor.name!r} has rank {len(full)} in the config, {len(tensor.dims)} in "
                                "the artifact")
                continue
            for k, (got, dim) in enumerate(zip(full, tensor.dims)):
                if batched and k == 0:
                    continue
                want = -1 if not sig.is_fixed(dim) else (dim if isinstance(dim, int) else sig.ranges[dim][0])
                if got != want:
                    problems.append(f"{label} {tensor.name!r} dim {k} is {got} in the config, the artifact's is "
                                    f"{dim} (expected {want})")
    return problems


def _commit(sig, config, repo: Path, notes: list[str]) -> PackagedModel:
    """Write the folder beside its final place, parse and lint what was written, then rename it in."""
    from google.protobuf import text_format

    pb = model_config_class()
    name = config.name
    platform, filename = PLATFORMS[sig.kind]
    target = repo / name
    if target.resolve() in sig.path.resolve().parents:
        raise BadInputError(f"{sig.path} lies inside {target}, which packaging would replace; package it into "
                            "another repository folder")
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=repo))
    try:
        (staging / "1").mkdir()
        _write_model_file(sig, staging / "1" / filename)
        (staging / "config.pbtxt").write_text(text_format.MessageToString(config))
        parsed = text_format.Parse((staging / "config.pbtxt").read_text(), pb.ModelConfig())
        problems = lint(parsed, sig)
        if problems:  # a bug in lndeploy, not in the artifact: say everything that is wrong
            raise BadInputError(f"{name}/config.pbtxt does not match {sig.path}: {'; '.join(problems)}")
        os.chmod(staging, 0o777 & ~current_umask())
        _replace_folder(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return PackagedModel(name, platform, target, parsed.max_batch_size, parsed, notes)


def _write_model_file(sig, dest: Path) -> None:
    if sig.kind == "plan":
        shutil.copyfile(sig.path, dest)
        from lndeploy.backends.tensorrt import sidecar

        shutil.copyfile(sidecar.sidecar_path(sig.path), sidecar.sidecar_path(dest))
        return
    from lndeploy import plugin_spec
    from lndeploy.onnxfile import external_data_files, save_model

    if sig.plugin_nodes:  # ORT runs plugin nodes through the model-local function (README, "--ln plugin")
        save_model(plugin_spec.with_reference_functions(sig.model), dest)
    elif external_data_files(sig.model):
        save_model(sig.model, dest)  # weights loaded by read(): one self-contained file (or model.onnx.data)
    else:
        shutil.copyfile(sig.path, dest)


def _replace_folder(staging: Path, target: Path) -> None:
    """Rename ``staging`` onto ``target``; an existing folder is moved aside first and removed after."""
    if not target.exists():
        os.rename(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old)

