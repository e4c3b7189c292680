"""Feed-forward network with LayerNorm over the H hidden units (gain/bias of shape (H,)).

A model file per lndeploy's contract: build(), example_inputs(), dynamic_axes().
"""

import torch
from torch import nn

from lndeploy.nn import LayerNorm

IN, HIDDEN, OUT = 64, 256, 10


def build() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(IN, HIDDEN), LayerNorm(HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN), LayerNorm(HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, OUT),
    ).eval()


def example_inputs():
    return (torch.randn(4, IN),)


def dynamic_axes():
    return {"input": {0: "batch"}}
