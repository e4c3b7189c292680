"""Legacy (TorchScript) exports of the zoo and the ConvNeXt block, made once per test session."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
CONVNEXT = str(HERE / "convnext_block.py")


def legacy_export(model_file: str, path: Path, opset: int):
    """``torch.onnx.export(..., dynamo=False)``: primitive-op LN, ReduceMean axes as attribute."""
    import torch

    from lndeploy.modelfile import load

    spec = load(model_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter is deprecated, and says so
        torch.onnx.export(spec.module, tuple(spec.inputs.values()), str(path), dynamo=False,
                          opset_version=opset, input_names=list(spec.inputs), dynamic_axes=spec.dynamic_axes)
    return spec


@pytest.fixture(scope="session")
def legacy(tmp_path_factory):
    """``legacy(model_file, opset) -> (path, spec)``, exported once per session."""
    folder = tmp_path_factory.mktemp("legacy")
    cache = {}

    def get(model_file: str, opset: int):
        key = (model_file, opset)
        if key not in cache:
            path = folder / f"{Path(model_file).stem}_{opset}.onnx"
            cache[key] = (path, legacy_export(model_file, path, opset))
        return cache[key]

    return get


def example_feed(spec) -> dict:
    return {name: tensor.numpy() for name, tensor in spec.inputs.items()}


def torch_outputs(spec) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = spec.module(*spec.inputs.values())
    flat = out if isinstance(out, (tuple, list)) else (out,)
    return [t.numpy() for t in _flatten(flat)]


def _flatten(items):
    for item in items:
        if isinstance(item, (tuple, list)):
            yield from _flatten(item)
        else:
            yield item
