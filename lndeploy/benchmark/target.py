"""What is benchmarked: a model file (exported here, in-process, to a temporary folder) or an artifact.

Input shapes: every dynamic dim that looks like a batch (named like "batch", or dim 0) takes the
benchmarked batch size; every other dynamic dim (a sequence length, ...) takes the model's example
size, or the size given with ``dims`` (``--dim seq=128``). An ONNX artifact has no example, so its
non-batch dynamic dims must be given.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from lndeploy.errors import BadInputError, UnavailableError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclass
class Target:
    kind: str  # "model" | "onnx" | "engine"
    ref: str
    specs: list  # lndeploy.inputs.InputSpec per input
    example_sizes: dict = field(default_factory=dict)  # dim label -> example size (model files)
    spec: object = None  # ModelSpec (model files)
    onnx: dict = field(default_factory=dict)  # "native" / "plugin" -> (ModelProto, path)
    notes: list = field(default_factory=list)
    export_seconds: float | None = None


def kind_of(ref) -> str:
    path = Path(str(ref))
    if path.suffix == ".onnx":
        return "onnx"
    if path.suffix in ENGINE_SUFFIXES:
        return "engine"
    return "model"


def load_target(ref, workdir: str, lns: tuple, log=None) -> Target:
    """Load ``ref``; for a model file export it once per LN form in ``lns`` ("native", "plugin")."""
    kind = kind_of(ref)
    if kind == "onnx":
        from lndeploy import plugin_spec
        from lndeploy.inputs import specs_from_onnx
        from lndeploy.onnxfile import load_model

        from lndeploy.onnxfile import non_tensor_inputs

        model = load_model(ref)
        for name, kind in non_tensor_inputs(model):  # there is no generator for them
            raise UnavailableError(f"lndeploy bench generates tensor inputs only; input {name!r} is a {kind}")
        form = "plugin" if plugin_spec.plugin_nodes(model) else "native"
        return Target(kind, str(ref), specs_from_onnx(model), onnx={form: (model, str(ref))})
    if kind == "engine":
        if not Path(str(ref)).is_file():
            raise BadInputError(f"engine not found: {ref}")
        return Target(kind, str(ref), [])
    return _export_model(str(ref), workdir, lns, log)


def _export_model(ref: str, workdir: str, lns: tuple, log) -> Target:
    from lndeploy import inputs, modelfile
    from lndeploy.pipeline import export

    spec = modelfile.load(ref)
    specs = inputs.specs_from_examples(spec.inputs, spec.dynamic_axes)
    examples = {}
    for name, axes in spec.dynamic_axes.items():
        for index, label in axes.items():
            examples.setdefault(label, int(spec.inputs[name].shape[index]))
    target = Target("model", ref, specs, examples, spec)
    start = time.perf_counter()
    for ln in lns:
        if log:
            log(f"exporting {ref} (LayerNorm {ln})")
        path = os.path.join(workdir, f"model-{ln}.onnx")
        result = export(spec, path, ln=ln)
        target.onnx[ln] = (result.model, path)
        target.notes += [f"export ({ln}): {note}" for note in result.notes]
    target.export_seconds = round(time.perf_counter() - start, 2)
    return target


def is_batch_like(label: str, index: int) -> bool:
    return "batch" in label.lower() or index == 0


def dynamic_labels(specs: list) -> tuple[list, list]:
    """(batch-like labels, other labels) of the inputs' dynamic dims, in first-seen order."""
    batch, other = [], []
    for spec in specs:
        for index, dim in enumerate(spec.shape):
            if isinstance(dim, str) and dim not in batch and dim not in other:
                (batch if is_batch_like(dim, index) else other).append(dim)
    return batch, [label for label in other if label not in batch]


def plan_sizes(target: Target, batches: list, dims: dict) -> list[tuple[int, dict]]:
    """(batch, {label: size}) per benchmarked batch size."""
    batch_labels, others = dynamic_labels(target.specs)
    unknown = [k for k in dims if k not in others]
    if unknown:
        what = "a batch dim: use --batch" if unknown[0] in batch_labels else \
            f"not a non-batch dynamic dim of the model ({', '.join(others) or 'it has none'})"
        raise BadInputError(f"--dim {unknown[0]}: {what}")
    fixed = {}
    for label in others:
        size = dims.get(label, target.example_sizes.get(label))
        if size is None:
            raise BadInputError(f"dynamic dim {label!r} has no example size in an ONNX artifact: "
                                f"give it with --dim {label}=N")
        fixed[label] = int(size)
    if not batch_labels:
        first = target.specs[0].shape[0] if target.specs and target.specs[0].shape else 1
        target.notes.append(f"no dynamic batch dim: benchmarked at the fixed batch {first} only")
        return [(int(first), dict(fixed))]
    return [(b, {**{label: b for label in batch_labels}, **fixed}) for b in batches]
