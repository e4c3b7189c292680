"""A ConvNeXt block with ConvNeXt's own hand-written channel-first LayerNorm (a model file per
lndeploy's contract). Exported by torch's legacy exporter, its LN is nine primitive ops over axis 1
of NCHW, which neither ONNX Runtime nor TensorRT recognise: the case ``lndeploy fuse`` rewrites to
Transpose -> LayerNormalization -> Transpose."""

import torch
import torch.nn.functional as F
from torch import nn

CHANNELS, SIZE = 64, 28


class ChannelFirstLayerNorm(nn.Module):
    """ConvNeXt's LayerNorm(data_format="channels_first"), as written in its repository."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Block(nn.Module):
    def __init__(self, channels: int = CHANNELS):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = ChannelFirstLayerNorm(channels)
        self.pwconv1 = nn.Conv2d(channels, 4 * channels, 1)
        self.pwconv2 = nn.Conv2d(4 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pwconv2(F.gelu(self.pwconv1(self.norm(self.dwconv(x)))))


def build() -> nn.Module:
    torch.manual_seed(0)
    model = Block()
    with torch.no_grad():  # non-trivial gain and bias, so a wrong broadcast cannot hide
        model.norm.weight.uniform_(0.5, 1.5)
        model.norm.bias.uniform_(-0.5, 0.5)
    return model.eval()


def example_inputs():
    return (torch.randn(2, CHANNELS, SIZE, SIZE),)


def dynamic_axes():
    return {"x": {0: "batch"}}
