"""LayerNorm over the trailing dims: y = g * (a - mu) / sqrt(var + eps) + b, biased variance.

``LayerNorm(H)`` is the feed-forward form (gain/bias of shape (H,)); ``LayerNorm((C, H, W))`` is the
convolutional form, each sample normalised over (C, H, W) with gain/bias of shape (C, H, W). Both
export as one ONNX ``LayerNormalization`` (axis -1, resp. -3). On a CUDA tensor, ``use_kernel=True``
runs lndeploy's own Triton kernel through the ``lndeploy::layer_norm`` custom op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class LayerNorm(torch.nn.LayerNorm):
    """``torch.nn.LayerNorm`` with an opt-in switch to lndeploy's kernel on CUDA tensors."""

    def __init__(self, normalized_shape, eps: float = 1e-5, use_kernel: bool = False, **kwargs):
        super().__init__(normalized_shape, eps=eps, **kwargs)
        self.use_kernel = use_kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_kernel and x.is_cuda and self.weight is not None and self.bias is not None:
            from lndeploy.nn.custom_op import layer_norm

            return layer_norm(x, self.weight, self.bias, len(self.normalized_shape), self.eps)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class ChannelLayerNorm(LayerNorm):
    """The CNN form: each sample of an (N, C, H, W) batch normalised over (C, H, W)."""

    def __init__(self, channels: int, height: int, width: int, eps: float = 1e-5, **kwargs):
        super().__init__((channels, height, width), eps=eps, **kwargs)
