"""The planted model: a one-layer ``HookedTransformer`` whose MLP computes the planted graph.

* The embedding writes token t's x_t = Σ_i a_ti d_i (``PlantedGraph.embedding``); positional
  embeddings are 0 and attention writes nothing (W_O = 0, b_O = 0), so block 0's residual
  stream before its MLP is the embedding.
* ``ln2``, what the MLP reads through, is a LayerNorm with bias 0 and the constant gain
  γ = √(|x|²/d_model + eps): every x_t sums to 0 (the input directions do) and has the same
  norm |x|, so LN(x_t) = (x_t − 0) / √(|x_t|²/d_model + eps) · γ = x_t. The MLP receives the
  planted x_t itself (to float32 rounding), gain and bias included.
* The MLP, x → relu(x W_in + b_in) W_out + b_out with d_mlp = n_out units: unit j is output
  feature j, W_in[:, j] = Σ_{i∈pa(j)} w_ij d_i (d_i is its own dual), b_in = b,
  W_out[j] = g_j, b_out = 0. So pre_j = Σ_i w_ij ⟨x, d_i⟩ + b_j = Σ_i w_ij a_i + b_j and
  mlp_out = Σ_j h_j g_j.
* The unembedding is random (seeded): nothing here reads the logits.

The tokenizer is ``jsae.tokenizer.byte_tokenizer``: one token per byte and BOS, so every
text works and each byte is one token with its own planted combination.
"""

from __future__ import annotations

import numpy as np
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from jsae.planted.graph import PlantedGraph
from jsae.tokenizer import BYTE_VOCAB, byte_tokenizer

LAYER = 0
"""The block whose MLP computes the graph (the model's only one)."""
TOKENIZER_NAME = "jsae-planted"


def ln_gain(graph: PlantedGraph, eps: float) -> float:
    """γ with LN(x_t) = x_t for every token: √(|x_t|²/d_model + eps)."""
    norm2 = float(np.sum(graph.settings.coefficients**2))  # |x_t|², orthonormal d_i
    return float(np.sqrt(norm2 / graph.settings.d_model + eps))


@torch.no_grad()
def planted_model(graph: PlantedGraph) -> HookedTransformer:
    """The model of ``graph`` (see the module docstring), in eval mode."""
    s = graph.settings
    if s.vocab != BYTE_VOCAB:
        raise ValueError(f"The planted model's vocabulary is the byte tokenizer's {BYTE_VOCAB}.")
    cfg = HookedTransformerConfig(
        model_name="jsae-planted",
        n_layers=1,
        d_model=s.d_model,
        d_mlp=s.n_out,
        d_head=s.d_model // 4,
        n_heads=4,
        n_ctx=s.n_ctx,
        d_vocab=s.vocab,
        act_fn="relu",
        normalization_type="LN",
        positional_embedding_type="standard",
        seed=s.seed,
    )
    model = HookedTransformer(cfg, tokenizer=byte_tokenizer(TOKENIZER_NAME))
    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    model.embed.W_E.copy_(f32(graph.embedding))
    model.pos_embed.W_pos.zero_()
    attn = model.blocks[LAYER].attn
    for name in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"):
        getattr(attn, name).zero_()  # attention writes nothing
    model.blocks[LAYER].ln2.w.fill_(ln_gain(graph, cfg.eps))
    model.blocks[LAYER].ln2.b.zero_()
    mlp = model.blocks[LAYER].mlp
    mlp.W_in.copy_(f32(graph.inputs.T @ graph.weights))
    mlp.b_in.copy_(f32(graph.bias))
    mlp.W_out.copy_(f32(graph.outputs))
    mlp.b_out.zero_()
    generator = torch.Generator().manual_seed(s.seed)
    model.unembed.W_U.copy_(torch.randn(s.d_model, s.vocab, generator=generator) / s.d_model**0.5)
    model.unembed.b_U.zero_()
    model.eval()
    return model
