"""A user's own model file: a tiny DistilBERT from a `transformers` config with random weights (no
download), plus ``sample_inputs()``: real-looking input sets with padded rows, which generated inputs
(an all-ones example mask) never exercise.

Nothing in lndeploy knows about it; it only follows the model-file contract (SPEC section 1).
"""

import numpy as np
import torch

VOCAB, SEQ = 100, 16


def build():
    from transformers import DistilBertConfig, DistilBertModel

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                              max_position_embeddings=64)
    config._attn_implementation = "eager"
    return DistilBertModel(config).eval()


def example_inputs():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (2, SEQ), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def dynamic_axes():
    return {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}


def padded_batch(lengths, seq: int = SEQ, seed: int = 0) -> dict:
    """A tokenizer's output for sentences of ``lengths`` tokens: [CLS]=1 ... [SEP]=2, padding 0, and an
    attention mask of ones then zeros, so every row's mask differs."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), seq), dtype=np.int64)
    mask = np.zeros((len(lengths), seq), dtype=np.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(3, VOCAB, length)
        ids[row, 0], ids[row, length - 1] = 1, 2
        mask[row, :length] = 1
    return {"input_ids": ids, "attention_mask": mask}


def sample_inputs():
    yield padded_batch([16, 9, 4], seed=1)
    yield {k: torch.from_numpy(v) for k, v in padded_batch([5], seq=7, seed=2).items()}
