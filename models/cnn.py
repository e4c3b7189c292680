"""ConvNet with LayerNorm over (C, H, W): each sample normalised over all its channels and pixels,
gain and bias of shape (C, H, W)."""

import torch
from torch import nn

from lndeploy.nn import ChannelLayerNorm


class LNConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.ln1 = ChannelLayerNorm(16, 32, 32)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.ln2 = ChannelLayerNorm(32, 16, 16)
        self.head = nn.Linear(32, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.ln1(self.conv1(image)))
        x = torch.relu(self.ln2(self.conv2(x)))
        # average pooling as a pooling op, so the only reductions in the graph are the LNs';
        # a static kernel (ln2 fixes H, W) so that the legacy TorchScript exporter can trace it too
        return self.head(nn.functional.avg_pool2d(x, self.ln2.normalized_shape[1:]).flatten(1))


def build() -> nn.Module:
    torch.manual_seed(0)
    model = LNConvNet()
    with torch.no_grad():  # non-trivial gains/biases, so a wrong broadcast cannot hide
        for ln in (model.ln1, model.ln2):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.5, 0.5)
    return model.eval()


def example_inputs():
    return (torch.randn(2, 3, 32, 32),)


def dynamic_axes():
    return {"image": {0: "batch"}}
