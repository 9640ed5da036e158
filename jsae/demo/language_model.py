"""The demo's language model: training it, and its losses.

A small ``HookedTransformer`` (GELU MLPs, LayerNorm) trained with AdamW, on the byte-level BPE
of ``jsae.tokenizer``. Its held-out loss is compared with a unigram baseline: the
cross-entropy of the held-out tokens under add-one-smoothed training-token frequencies.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from jsae.demo.settings import DemoSettings

ACT_FN = "gelu"
NORMALIZATION_TYPE = "LN"
"""The language model's MLP activation and LayerNorm, as trained (the build folds the
LayerNorms' weights into the next layers before the SAEs are trained)."""


def new_language_model(
    settings: DemoSettings, tokenizer: PreTrainedTokenizerFast, seed: int
) -> HookedTransformer:
    """An untrained language model of ``settings``' shape, initialised under ``seed``."""
    cfg = HookedTransformerConfig(
        model_name="jsae-demo",
        n_layers=settings.n_layers,
        d_model=settings.d_model,
        d_mlp=settings.d_mlp,
        d_head=settings.d_head,
        n_heads=settings.d_model // settings.d_head,
        n_ctx=settings.n_ctx,
        d_vocab=len(tokenizer),
        act_fn=ACT_FN,
        normalization_type=NORMALIZATION_TYPE,
        positional_embedding_type="standard",
        seed=seed,
    )
    return HookedTransformer(cfg, tokenizer=tokenizer)


def train_language_model(
    model: HookedTransformer,
    tokens: Int[Tensor, "n ctx"],
    settings: DemoSettings,
    seed: int,
    log: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    """AdamW with warm-up and cosine decay; sequences in a seeded order per epoch."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.lm_weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.lm_lr,
        betas=(0.9, 0.95),
    )
    batch = settings.lm_batch_size
    per_epoch = max(1, len(tokens) // batch)
    history = []
    model.train()
    running, count = 0.0, 0
    for step in range(settings.lm_steps):
        epoch, b = divmod(step, per_epoch)
        order = np.random.default_rng([seed, 2, epoch]).permutation(len(tokens))
        rows = torch.from_numpy(order[b * batch : (b + 1) * batch])
        warm = min(1.0, (step + 1) / max(settings.lm_warmup_steps, 1))
        progress = step / max(settings.lm_steps - 1, 1)
        lr = settings.lm_lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = model(tokens[rows], return_type="loss")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running += loss.item()
        count += 1
        if (step + 1) % 50 == 0 or step + 1 == settings.lm_steps:
            history.append({"step": step + 1, "loss": running / count, "lr": lr})
            log(f"  LM step {step + 1}/{settings.lm_steps}: train loss {running / count:.3f}")
            running, count = 0.0, 0
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return history


@torch.no_grad()
def language_model_loss(
    model: HookedTransformer, tokens: Int[Tensor, "n ctx"], batch: int = 16
) -> float:
    """Mean next-token cross-entropy (nats) over every predicted position of ``tokens``."""
    total, count = 0.0, 0
    for start in range(0, len(tokens), batch):
        rows = tokens[start : start + batch]
        per_token = model(rows, return_type="loss", loss_per_token=True)
        total += float(per_token.sum())
        count += per_token.numel()
    return total / count


def unigram_loss(
    train_tokens: Int[Tensor, "n ctx"], heldout_tokens: Int[Tensor, "m ctx"], vocab: int
) -> float:
    """Cross-entropy (nats) of the held-out targets under add-one-smoothed train frequencies.

    Targets are positions 1.. of each row, the ones the language model's loss predicts.
    """
    counts = torch.bincount(train_tokens[:, 1:].reshape(-1), minlength=vocab).double() + 1
    logp = (counts / counts.sum()).log()
    return float(-logp[heldout_tokens[:, 1:].reshape(-1)].mean())
