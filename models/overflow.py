"""A residual stream with outlier channels: pre-LN activations spread over +-300, as in large transformers.

    stream = embed(x) + offset        offset: one fixed value per channel, evenly spread over [-300, 300]
    out    = head(LN(stream))         O(1): LN takes the spread out

LN's centred values d = stream - mean reach ~300, so d*d reaches ~9e4 > 65504, fp16's largest finite
value: an LN whose statistics are computed in fp16 overflows (var = inf, output ~ bias), while the
same model in fp32, or in fp16 with LN statistics in fp32, is fine. lndeploy's tests use it to prove
that the fp16 plan keeps LN in fp32 on a runtime that does fp16 arithmetic in fp16.

A model file per lndeploy's contract: build(), example_inputs(), dynamic_axes().
"""

import torch
from torch import nn

from lndeploy.nn import LayerNorm

D_IN, D_MODEL, D_OUT = 32, 256, 16
OUTLIER = 300.0  # |d| > 256 already squares past 65504


class OutlierStream(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(D_IN, D_MODEL)
        # per-channel offsets, shuffled so that neighbouring channels differ (as outlier features do)
        spread = torch.linspace(-OUTLIER, OUTLIER, D_MODEL)[torch.randperm(D_MODEL)]
        self.offset = nn.Parameter(spread)
        self.ln = LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, D_OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stream = self.embed(x) + self.offset
        return self.head(self.ln(stream))


def build() -> nn.Module:
    torch.manual_seed(0)
    return OutlierStream().eval()


def example_inputs():
    return (torch.randn(2, 8, D_IN),)


def dynamic_axes():
    return {"x": {0: "batch", 1: "seq"}}
