"""A user's T5 encoder (`transformers`, tiny random config): RMS norm, no LayerNorm, and relative-position
buckets computed through float ops (log, div, mul) then truncated to integers."""

import torch


def build():
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)
    config._attn_implementation = "eager"
    return T5EncoderModel(config).eval()


def example_inputs():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 100, (2, 8), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0  # padding: generated masks are then drawn from {0, 1}
    return {"input_ids": ids, "attention_mask": mask}


def dynamic_axes():
    return {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
