"""``torch.ops.lndeploy.layer_norm`` on CPU: matches LayerNorm's definition computed independently in
float64 (its CPU path is ``F.layer_norm``, so comparing with ``F.layer_norm`` would compare it with
itself), traces through torch.export."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import numpy as np
import torch

from lndeploy.nn.custom_op import layer_norm


def _reference(x, w, b, ndim: int, eps: float) -> np.ndarray:
    """LayerNorm's definition (Ba et al. 2016) in float64 numpy: biased variance, eps inside the root."""
    x64, w64, b64 = (t.double().numpy() for t in (x, w, b))
    axes = tuple(range(x64.ndim - ndim, x64.ndim))
    mean = x64.mean(axis=axes, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x64 - mean) / np.sqrt(var + eps) * w64 + b64


def _params(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(dtype), torch.randn(shape, generator=g).to(dtype)


@pytest.mark.parametrize("x_shape,ndim", [((4, 7, 768), 1), ((2, 3, 5, 6), 3), ((5, 1), 1)])
def test_fp32_matches_the_float64_definition(x_shape, ndim):
    x = 3.0 + 2.0 * torch.randn(x_shape, generator=torch.Generator().manual_seed(1))
    w, b = _params(x_shape[-ndim:])
    y = layer_norm(x, w, b, ndim, 1e-5)
    assert y.dtype == torch.float32
    # measured: max abs error 1.3e-6 over outputs up to ~10 (fp32 rounding); 1e-5 leaves 7x room
    np.testing.assert_allclose(y.double().numpy(), _reference(x, w, b, ndim, 1e-5), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_input_keeps_dtype_and_uses_fp32_statistics(dtype):
    # Values ~ 300 +- 300: an fp16 sum of squares would overflow; fp32 statistics do not.
    x = (300 + 300 * torch.randn(8, 1024, generator=torch.Generator().manual_seed(2))).to(dtype)
    w, b = _params(1024, dtype)
    y = layer_norm(x, w, b, 1, 1e-5)
    assert y.dtype == dtype and torch.isfinite(y).all()
    # the exact result rounded once to the output type: within one unit in the last place of it
    ulp = torch.finfo(dtype).eps
    np.testing.assert_allclose(y.double().numpy(), _reference(x, w, b, 1, 1e-5), rtol=ulp, atol=ulp)


def test_eps_is_used():
    x = torch.tensor([[0.0, 1e-3]])
    w, b = torch.ones(2), torch.zeros(2)
    small, large = layer_norm(x, w, b, 1, 1e-12), layer_norm(x, w, b, 1, 1.0)
    assert small.abs().max() > 0.99 and large.abs().max() < 1e-3


def test_wrong_parameter_shape_is_rejected():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"weight has shape \(4,\), expected \(3, 4\)"):
        layer_norm(x, torch.ones(4), torch.zeros(4), 2)
    with pytest.raises(ValueError, match="normalized_ndim=4"):
        layer_norm(x, torch.ones(4), torch.zeros(4), 4)


def test_opcheck():
    """torch's own consistency checks: schema, fake vs real metadata, dispatch registrations."""
    x = torch.randn(3, 5, 16)
    w, b = _params((5, 16))
    torch.library.opcheck(torch.ops.lndeploy.layer_norm.default, (x, w, b, 2, 1e-5))


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)
        self.weight = torch.nn.Parameter(torch.rand(8) + 0.5)
        self.bias = torch.nn.Parameter(torch.randn(8))

    def forward(self, x):
        return layer_norm(self.lin(x), self.weight, self.bias, 1, 1e-5)


def test_torch_export_keeps_one_opaque_op():
    model = _Tiny().eval()
    x = torch.randn(4, 8)
    batch = torch.export.Dim("batch", min=1, max=1024)
    ep = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.lndeploy.layer_norm.default) == 1
    assert not any("native_layer_norm" in str(t) for t in targets)
    x2 = torch.randn(11, 8)
    torch.testing.assert_close(ep.module()(x2), model(x2), rtol=0, atol=0)


def test_import_does_not_import_triton():
    code = ("import sys\nimport lndeploy.nn.custom_op\n"
            "assert 'triton' not in sys.modules, 'triton imported'\nprint('ok')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
