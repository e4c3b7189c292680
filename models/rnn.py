"""Elman RNN with per-step LayerNorm: a_t = W_hh h_{t-1} + W_xh x_t, h_t = tanh(LN(a_t)).

Exports as one ONNX Scan: batch and sequence length are both dynamic."""

import torch
from torch import nn

from lndeploy.nn import LNElmanCell, Recurrent

FEATURES, HIDDEN = 16, 64


class LNElman(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = Recurrent(LNElmanCell(FEATURES, HIDDEN))

    def forward(self, x: torch.Tensor):
        outputs, last = self.rnn(x)
        return outputs, last


def build() -> nn.Module:
    torch.manual_seed(0)
    return LNElman().eval()


def example_inputs():
    return (torch.randn(2, 8, FEATURES),)


def dynamic_axes():
    return {"x": {0: "batch", 1: "seq"}}
