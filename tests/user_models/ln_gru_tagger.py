"""A user's own sequence tagger: token ids -> embedding -> a bidirectional LN-GRU (``lndeploy.nn``, one
``Recurrent`` forward and one over the reversed sequence) -> a linear layer to 7 tags per token.

Output ``[batch, seq, 7]``: its dims 0 and 1 follow the inputs' dynamic ``batch`` and ``seq``. It follows
only the model-file contract (README 'The model file').

``build_with_torch_gru`` (``ln_gru_tagger.py:build_with_torch_gru``) is the same tagger on torch's own
``nn.GRU(bidirectional=True)`` with a LayerNorm after it: torch's exporter declares its output
``[batch, 10, 7]`` (the example's length), which lndeploy makes symbolic (``lndeploy.exporter.dims``).
"""

import torch
from torch import nn

from lndeploy.nn import LNGRUCell, Recurrent

VOCAB, EMBED, HIDDEN, TAGS = 50, 16, 24, 7


class BiLNGRUTagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.forward_rnn = Recurrent(LNGRUCell(EMBED, HIDDEN))
        self.backward_rnn = Recurrent(LNGRUCell(EMBED, HIDDEN))
        self.tags = nn.Linear(2 * HIDDEN, TAGS)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        ahead, _ = self.forward_rnn(x)
        behind, _ = self.backward_rnn(torch.flip(x, dims=[1]))
        return self.tags(torch.cat([ahead, torch.flip(behind, dims=[1])], dim=-1))


class TorchGRUTagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.gru = nn.GRU(EMBED, HIDDEN, batch_first=True, bidirectional=True)
        self.norm = nn.LayerNorm(2 * HIDDEN)
        self.tags = nn.Linear(2 * HIDDEN, TAGS)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(self.embed(tokens))
        return self.tags(self.norm(states))


def build() -> nn.Module:
    torch.manual_seed(0)
    return BiLNGRUTagger().eval()


def build_with_torch_gru() -> nn.Module:
    torch.manual_seed(0)
    return TorchGRUTagger().eval()


def example_inputs():
    generator = torch.Generator().manual_seed(0)
    return (torch.randint(0, VOCAB, (2, 10), generator=generator),)


def dynamic_axes():
    return {"tokens": {0: "batch", 1: "seq"}}
