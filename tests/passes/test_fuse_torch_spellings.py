"""Hand-written LayerNorm modules through torch's legacy exporter (``dynamo=False``), the way old
checkpoints were shipped: each spelling becomes one LayerNormalization that matches PyTorch."""

import io
import warnings

import numpy as np
import onnx
import pytest

from lndeploy.backends.onnxruntime import OrtSession
from lndeploy.passes.fuse import histogram
from lndeploy.pipeline import fuse

EPS = 1e-5


def hand_written(spelling: str):
    import torch

    class HandLN(torch.nn.Module):
        def forward(self, x):
            mean = x.mean(-1, keepdim=True)
            if spelling == "var":  # torch.var computes its own mean: a second ReduceMean in the export
                return (x - mean) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + EPS)
            d = x - mean
            return d * torch.rsqrt(d.pow(2).mean(-1, keepdim=True) + EPS)

    return HandLN().eval()


def legacy_bytes(module, x, opset: int) -> onnx.ModelProto:
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter is deprecated, and says so
        torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=opset, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.parametrize("opset", [11, 16])
@pytest.mark.parametrize("spelling", ["var", "rsqrt"])
def test_hand_written_layer_norm(spelling, opset):
    import torch

    module = hand_written(spelling)
    x = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(0))
    result = fuse(legacy_bytes(module, x, opset))
    assert histogram(result.model) == {"LayerNormalization": 1}
    with torch.no_grad():
        want = module(x).numpy()
    got = OrtSession(result.model).run({"x": x.numpy()})["y"]
    assert float(np.max(np.abs(got - want))) <= 1e-5
