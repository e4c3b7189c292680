"""A user's ViT (`transformers`, tiny random config, seeded): patch embedding, pre-LN encoder, GELU.

Used by the error-budget tests (docs/budget.md): in bf16 its max abs error against fp32 PyTorch is
about PyTorch's own bf16 error, which the fixed 1e-2 does not always cover.
"""

import torch


def build():
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=64, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=128)
    config._attn_implementation = "eager"
    return ViTModel(config, add_pooling_layer=False).eval()


def example_inputs():
    return (torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)),)


def dynamic_axes():
    return {"pixel_values": {0: "batch"}}
