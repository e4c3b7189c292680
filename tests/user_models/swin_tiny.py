"""A user's Swin (`transformers`, tiny random config, seeded): windowed attention, patch merging (an LN
over concatenated patches), several LN per stage."""

import torch


def build():
    from transformers import SwinConfig, SwinModel

    torch.manual_seed(0)
    config = SwinConfig(image_size=32, patch_size=4, num_channels=3, embed_dim=16, depths=[1, 1],
                        num_heads=[2, 4], window_size=4, mlp_ratio=2.0)
    config._attn_implementation = "eager"
    return SwinModel(config, add_pooling_layer=False).eval()


def example_inputs():
    return (torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)),)


def dynamic_axes():
    return {"pixel_values": {0: "batch"}}
