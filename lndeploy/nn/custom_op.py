"""``torch.ops.lndeploy.layer_norm``: one opaque op per LayerNorm, so export can map it to one plugin node.

    y = weight * (x - mean) / sqrt(var + eps) + bias,  mean and biased var over the last
    ``normalized_ndim`` dims of x; weight and bias have the shape of those dims.

On CUDA tensors it runs lndeploy's Triton kernel; on any other device a reference built on
``F.layer_norm`` with statistics in fp32 (what the kernel computes), so CPU results are the yardstick
for the kernel. The fake implementation lets ``torch.export`` trace through the op without running it.

Importing this module does not import triton: the kernel is imported on the first CUDA call, so CPU
machines without triton can still trace and export models that use the op.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

OP_NAME = "lndeploy::layer_norm"


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, normalized_ndim: int) -> tuple:
    if not 1 <= normalized_ndim <= x.dim():
        raise ValueError(f"normalized_ndim={normalized_ndim} must be in [1, {x.dim()}] for x of "
                         f"shape {tuple(x.shape)}")
    shape = tuple(x.shape[x.dim() - normalized_ndim:])
    for name, t in (("weight", weight), ("bias", bias)):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
    return shape


@torch.library.custom_op(OP_NAME, mutates_args=())
def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, normalized_ndim: int,
                eps: float) -> torch.Tensor:
    """Reference for every device without a registered kernel (CPU): fp32 statistics, output in x's
    dtype. ``F.layer_norm`` on the fp32 copy also keeps fp16 CPU inputs on a well-tested path."""
    shape = _check(x, weight, bias, normalized_ndim)
    y = F.layer_norm(x.float(), shape, weight.float(), bias.float(), eps)
    return y.to(x.dtype)


@_layer_norm.register_kernel("cuda")
def _layer_norm_cuda(x, weight, bias, normalized_ndim, eps):
    shape = _check(x, weight, bias, normalized_ndim)
    from lndeploy.plugins.layernorm.kernel import layer_norm as triton_layer_norm

    # The kernel takes gamma/beta of x's dtype or fp32; anything else is cast to fp32 here.
    weight, bias = (t if t.dtype in (x.dtype, torch.float32) else t.float() for t in (weight, bias))
    return triton_layer_norm(x, weight, bias, eps, normalized_numel=math.prod(shape))


@_layer_norm.register_fake
def _layer_norm_fake(x, weight, bias, normalized_ndim, eps):
    _check(x, weight, bias, normalized_ndim)
    # Both real implementations return a dense row-major tensor whatever x's strides are.
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, normalized_ndim: int,
               eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last ``normalized_ndim`` dims of ``x`` through ``torch.ops.lndeploy``."""
    return torch.ops.lndeploy.layer_norm(x, weight, bias, int(normalized_ndim), float(eps))
