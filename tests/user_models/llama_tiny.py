"""A user's Llama (`transformers`, tiny random config, seeded): RMS norm, rotary positions, SiLU-gated MLP,
causal attention; no KV cache."""

import torch


def build():
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         use_cache=False)
    config._attn_implementation = "eager"
    return LlamaModel(config).eval()


def example_inputs():
    return {"input_ids": torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(0))}


def dynamic_axes():
    return {"input_ids": {0: "batch", 1: "seq"}}
