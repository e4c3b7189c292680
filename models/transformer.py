"""A pre-norm transformer encoder block: x + Attn(LN(x)), then x + MLP(LN(x)), and a final LN.

Written with plain ops (no fused kernels) so that every LayerNorm is visible to the exporter."""

import math

import torch
from torch import nn

from lndeploy.nn import LayerNorm

D_MODEL, HEADS, D_FF = 128, 4, 512


class PreNormBlock(nn.Module):
    def __init__(self, d_model: int = D_MODEL, heads: int = HEADS, d_ff: int = D_FF):
        super().__init__()
        self.heads = heads
        self.ln_attn = LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln_mlp = LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.ln_out = LayerNorm(d_model)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        out = torch.softmax(scores, dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, d))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens + self.attention(self.ln_attn(tokens))
        x = x + self.mlp(self.ln_mlp(x))
        return self.ln_out(x)


def build() -> nn.Module:
    torch.manual_seed(0)
    return PreNormBlock().eval()


def example_inputs():
    return (torch.randn(2, 16, D_MODEL),)


def dynamic_axes():
    return {"tokens": {0: "batch", 1: "seq"}}
