"""GRU with LayerNorm after Ba et al. 2016 (LN on the input and recurrent terms separately).
Exports as one ONNX Scan with dynamic batch and sequence length."""

import torch
from torch import nn

from lndeploy.nn import LNGRUCell, Recurrent

FEATURES, HIDDEN = 16, 64


class LNGRU(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = Recurrent(LNGRUCell(FEATURES, HIDDEN))

    def forward(self, x: torch.Tensor):
        outputs, last = self.rnn(x)
        return outputs, last


def build() -> nn.Module:
    torch.manual_seed(0)
    return LNGRU().eval()


def example_inputs():
    return (torch.randn(2, 8, FEATURES),)


def dynamic_axes():
    return {"x": {0: "batch", 1: "seq"}}
