"""What the bundled default is built with: ``DemoSettings`` (``FULL`` for the shipped bundle,
``QUICK`` for tests) and the names and constants the build and its measurement share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jsae.demo.kinds import KINDS, KindRecipe

METRICS_FILE = "metrics.json"
HELDOUT_FILE = "heldout_tokens.safetensors"
SPLITS = ("lm", "sae", "heldout")
"""The corpus's splits: language-model training, SAE training, held out."""


@dataclass(frozen=True)
class DemoSettings:
    """Everything ``build_demo`` trains with (``FULL`` for the bundle, ``QUICK`` for tests).

    Args:
        max_chars: stop reading the standard library after this many characters (None: all).
        heldout_fraction, sae_fraction: the splits' shares of the corpus's characters.
        vocab_size: the BPE tokenizer's vocabulary, BOS included.
        n_layers, d_model, d_mlp, d_head, n_ctx: the language model's shape.
        lm_steps, lm_batch_size, lm_lr, lm_warmup_steps, lm_weight_decay: its AdamW training
            (cosine decay to a tenth of ``lm_lr``).
        d_sae, k: every SAE's width and number of active features.
        kinds: the pair kinds trained for every layer, in order (``jsae.demo.kinds``: each
            one's objective, λ and initialisation).
        sae_steps, sae_lr: each layer's pairs' optimizer steps and learning rate.
        aux_k: the AuxK loss's dead features (0: no AuxK).
        dead_window_tokens: the dead-feature window during training (and for AuxK).
            These four take one value for all layers or a tuple with one per layer; every
            kind's pair of a layer is trained with them, on the same data in the same order.
        sae_batch_tokens, jacobian_tokens: every pair's batch, and the tokens of each batch
            the Jacobian penalty is estimated on (see :class:`jsae.train.PairTrainingConfig`).
        sample_sequences: held-out sequences stored in the bundle for measuring it.
        eval_sequences: held-out sequences for the language model's loss (at most).
    """

    max_chars: int | None = None
    heldout_fraction: float = 0.05
    sae_fraction: float = 0.25
    vocab_size: int = 4096
    n_layers: int = 4
    d_model: int = 128
    d_mlp: int = 512
    d_head: int = 32
    n_ctx: int = 256
    lm_steps: int = 400
    lm_batch_size: int = 16
    lm_lr: float = 3e-3
    lm_warmup_steps: int = 50
    lm_weight_decay: float = 0.1
    d_sae: int = 1024
    k: int = 16
    kinds: tuple[KindRecipe, ...] = KINDS
    # layer 0's MLP has a 2-3x larger Jacobian than the others and needs twice the steps
    sae_steps: int | tuple[int, ...] = (600, 300, 300, 300)
    sae_batch_tokens: int = 2048
    sae_lr: float | tuple[float, ...] = 2e-3
    jacobian_tokens: int | None = 512
    aux_k: int | tuple[int, ...] = (64, 0, 0, 0)
    dead_window_tokens: int | tuple[int, ...] = (50_000, 200_000, 200_000, 200_000)
    sample_sequences: int = 16
    eval_sequences: int = 256

    def for_layer(self, name: str, layer: int) -> Any:
        """A per-layer setting's value for ``layer``."""
        value = getattr(self, name)
        return value[layer] if isinstance(value, tuple) else value


FULL = DemoSettings()
QUICK = DemoSettings(
    max_chars=60_000,
    heldout_fraction=0.15,
    sae_fraction=0.3,
    vocab_size=400,
    n_layers=2,
    d_model=32,
    d_mlp=128,
    d_head=8,
    n_ctx=64,
    lm_steps=30,
    lm_batch_size=8,
    lm_warmup_steps=5,
    d_sae=128,
    k=8,
    sae_steps=20,
    aux_k=16,
    sae_batch_tokens=256,
    jacobian_tokens=None,
    dead_window_tokens=2000,
    sample_sequences=4,
    eval_sequences=16,
)
