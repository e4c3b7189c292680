"""LSTM with LayerNorm after Ba et al. 2016: LN on the input term, the recurrent term and the cell
state separately. Exports as one ONNX Scan with dynamic batch and sequence length."""

import torch
from torch import nn

from lndeploy.nn import LNLSTMCell, Recurrent

FEATURES, HIDDEN = 16, 64


class LNLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = Recurrent(LNLSTMCell(FEATURES, HIDDEN))

    def forward(self, x: torch.Tensor):
        outputs, (h, c) = self.rnn(x)
        return outputs, h, c


def build() -> nn.Module:
    torch.manual_seed(0)
    return LNLSTM().eval()


def example_inputs():
    return (torch.randn(2, 8, FEATURES),)


def dynamic_axes():
    return {"x": {0: "batch", 1: "seq"}}
