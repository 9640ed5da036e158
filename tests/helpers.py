"""Tiny random models, tokenizers and TopK SAE pairs, built from configs. Nothing downloads."""

from __future__ import annotations

import torch
from sae_lens import TopKSAE, TopKSAEConfig
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from jsae.pair import JSAEPair, hook_in_name, hook_out_name
from jsae.tokenizer import train_tokenizer
from jsae.train import PairTrainingConfig, chunk_token_ids

TEXT = (
    "The quick brown fox jumps over the lazy dog. A sparse autoencoder reads the MLP. "
    "def f(x):\n    return x + 1\n- apples\n- pears\nAlice: hi!\nBob: hello, Alice.\n"
)


def tiny_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with a BOS token, trained on a few sentences (the demo's
    tokenizer recipe, every pair eligible for a merge)."""
    return train_tokenizer([TEXT] * 4, vocab_size, min_frequency=0, name="tiny")


def tiny_model(
    act_fn: str = "gelu",
    n_layers: int = 2,
    d_model: int = 16,
    d_mlp: int = 64,
    n_ctx: int = 64,
    normalization_type: str | None = "LN",
    folded: bool = False,
    **cfg_kwargs,
) -> HookedTransformer:
    """A random model whose LayerNorms have a random gain and bias (so that the MLP input
    differs from ``ln2.hook_normalized`` unless ``folded``, which folds them into the next
    layers as ``from_pretrained`` does, leaving ``LNPre``)."""
    tokenizer = tiny_tokenizer()
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=d_model,
        d_mlp=d_mlp,
        d_head=4,
        n_heads=d_model // 4,
        n_ctx=n_ctx,
        d_vocab=len(tokenizer),
        act_fn=act_fn,
        normalization_type=normalization_type,
        seed=0,
        **cfg_kwargs,
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    model.eval()
    with torch.no_grad():  # random biases and LN weights, so nothing is trivially zero
        for name, p in model.named_parameters():
            if name.endswith(("b_in", "b_out", ".b", ".w")):
                p.add_(0.1 * torch.randn_like(p))
    if folded:
        model.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    return model


def tiny_sae(
    d_in: int, d_sae: int, k: int, hook_name: str | None, apply_b_dec_to_input: bool = False
) -> TopKSAE:
    cfg = TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, apply_b_dec_to_input=apply_b_dec_to_input)
    if hook_name is not None:
        cfg.metadata.hook_name = hook_name
    sae = TopKSAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae) / d_in**0.5)
        sae.W_dec.copy_(torch.randn(d_sae, d_in) / d_in**0.5)
        sae.b_enc.copy_(0.1 * torch.randn(d_sae))
        sae.b_dec.copy_(0.1 * torch.randn(d_in))
    return sae


def tiny_pair(
    model: HookedTransformer,
    layer: int = 1,
    d_sae: int = 64,
    k: int = 8,
    k_out: int | None = None,
    kind: str = "jsae",
    apply_b_dec_to_input: bool = False,
) -> JSAEPair:
    d = model.cfg.d_model
    return JSAEPair(
        sae_in=tiny_sae(d, d_sae, k, hook_in_name(layer), apply_b_dec_to_input),
        sae_out=tiny_sae(d, d_sae, k_out or k, hook_out_name(layer), apply_b_dec_to_input),
        layer=layer,
        kind=kind,
    )


def tiny_pairs(model: HookedTransformer) -> dict[str, dict[int, JSAEPair]]:
    """The tests' usual source layout: JSAE pairs on layers 0 and 1, a plain pair on layer 1."""
    return {
        "jsae": {0: tiny_pair(model, 0), 1: tiny_pair(model, 1)},
        "plain": {1: tiny_pair(model, 1, kind="plain")},
    }


def micro_config(**overrides) -> PairTrainingConfig:
    """A pair trained in a few seconds around block 1 of a ``tiny_model``."""
    settings = dict(
        layer=1,
        d_sae=64,
        k=4,
        lr=3e-3,
        batch_tokens=128,
        steps=40,
        seed=0,
        context_size=32,
        model_batch_size=4,
        block_sequences=8,
        warmup_steps=5,
        dead_window_tokens=1000,
        log_every=5,
    )
    settings.update(overrides)
    return PairTrainingConfig(**settings)


def random_token_rows() -> torch.Tensor:
    """24 rows of BOS (id 0) + 31 random token ids, for ``micro_config``'s context."""
    generator = torch.Generator().manual_seed(1)
    body = torch.randint(1, 300, (24 * 31,), generator=generator)
    return chunk_token_ids(body, 32, bos=0)


def hook_activations(
    model: HookedTransformer, tokens: torch.Tensor, layer: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ln2.hook_normalized, hook_mlp_out) of block ``layer`` from the model's own hooks, BOS
    left out: the MLP's input and output when the LayerNorms are folded (``LNPre``)."""
    hooks = [hook_in_name(layer), hook_out_name(layer)]
    _, cache = model.run_with_cache(tokens, names_filter=hooks, stop_at_layer=layer + 1)
    d = model.cfg.d_model
    return cache[hooks[0]][:, 1:].reshape(-1, d), cache[hooks[1]][:, 1:].reshape(-1, d)
