"""A user's own model file: a small BERT from a `transformers` config with random weights.

Nothing in lndeploy knows about it; it only follows the model-file contract (SPEC section 1).
"""

import torch


def build():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128)
    config._attn_implementation = "eager"
    return BertModel(config, add_pooling_layer=False).eval()


def example_inputs():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 100, (2, 16), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def dynamic_axes():
    return {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
