"""How a pair is trained (``PairTrainingConfig``) and what training returns (``TrainResult``).

The config validates itself and owns the run's schedules: the learning rate (linear warm-up
from 0, then constant, then a linear decay to 0 over the last ``decay_fraction`` of the steps),
λ (a linear warm-up over ``jacobian_warmup_steps``), and the steps that end with a history
entry or a checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from jsae.errors import InputError
from jsae.pair import JSAEPair


@dataclass(frozen=True)
class PairTrainingConfig:
    """How to train one pair around the MLP of block ``layer``.

    Args:
        layer: the block whose MLP the pair surrounds.
        d_sae: features of each SAE.
        k: active features per token of each SAE.
        jacobian_coefficient: λ, the weight of the mean |J| penalty; 0 trains a plain pair.
        lr: Adam's learning rate (after warm-up, before the final decay).
        batch_tokens: tokens per optimizer step.
        steps: optimizer steps in all.
        seed: seeds the SAEs' initialisation and the order of the activation stream.
        context_size: tokens per sequence fed to the model (BOS included).
        model_batch_size: sequences per forward pass of the model.
        block_sequences: sequences whose activations are read, shuffled and used together
            (the shuffle buffer: ``block_sequences * (context_size - 1)`` tokens).
        skip_bos: leave out the BOS position's activations (an outlier in most models).
        warmup_steps: linear learning-rate warm-up from 0.
        decay_fraction: the learning rate decays linearly to 0 over this last fraction of
            the steps.
        apply_b_dec_to_input: subtract the decoder bias before encoding (sae-lens option).
        jacobian_warmup_steps: λ grows linearly from 0 to ``jacobian_coefficient`` over
            these first steps (0: the full λ from the start).
        jacobian_tokens: estimate the penalty on this many of each batch's (shuffled) tokens
            instead of all of them, to save time; None uses every token. With λ = 0 the
            penalty is only computed, without gradients, on logging steps.
        dead_window_tokens: a feature that has not fired in this many tokens counts as dead.
        aux_k: dead features used by the AuxK loss (Gao et al. 2024), 0 for none.
        aux_coefficient: the AuxK loss's weight.
        checkpoint_every: steps between checkpoints, 0 for none (needs ``checkpoint_dir``).
        log_every: steps between entries of the history (and W&B logs).
    """

    layer: int
    d_sae: int = 1024
    k: int = 16
    jacobian_coefficient: float = 0.0
    lr: float = 1e-3
    batch_tokens: int = 1024
    steps: int = 1000
    seed: int = 0
    context_size: int = 256
    model_batch_size: int = 16
    block_sequences: int = 64
    skip_bos: bool = True
    warmup_steps: int = 50
    decay_fraction: float = 0.2
    apply_b_dec_to_input: bool = True
    jacobian_tokens: int | None = None
    jacobian_warmup_steps: int = 0
    dead_window_tokens: int = 100_000
    aux_k: int = 0
    aux_coefficient: float = 1 / 32
    checkpoint_every: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        positive = ("d_sae", "k", "batch_tokens", "context_size", "model_batch_size")
        for name in positive + ("block_sequences", "dead_window_tokens", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise InputError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.k > self.d_sae:
            raise InputError(f"k={self.k} cannot exceed d_sae={self.d_sae}.")
        if min(self.steps, self.checkpoint_every, self.warmup_steps) < 0:
            raise InputError("steps, checkpoint_every and warmup_steps cannot be negative.")
        if self.jacobian_warmup_steps < 0:
            raise InputError("jacobian_warmup_steps cannot be negative.")
        if not (self.jacobian_coefficient >= 0 and math.isfinite(self.jacobian_coefficient)):
            raise InputError("jacobian_coefficient (λ) must be a finite number >= 0.")
        if not 0 <= self.decay_fraction <= 1:
            raise InputError("decay_fraction must lie in [0, 1].")
        if self.jacobian_tokens is not None and self.jacobian_tokens <= 0:
            raise InputError("jacobian_tokens must be a positive integer or None.")
        if self.context_size < 2:
            raise InputError("context_size must be at least 2 (BOS and one token).")

    @property
    def kind(self) -> str:
        return "jsae" if self.jacobian_coefficient > 0 else "plain"

    def coefficient_at(self, step: int) -> float:
        """λ at optimizer step ``step`` (0-based), after its warm-up."""
        if self.jacobian_warmup_steps:
            return self.jacobian_coefficient * min(1.0, (step + 1) / self.jacobian_warmup_steps)
        return self.jacobian_coefficient

    def logs_after(self, step: int) -> bool:
        """Whether optimizer step ``step`` (0-based) ends with a history entry."""
        return (step + 1) % self.log_every == 0 or step + 1 == self.steps

    def checkpoints_after(self, step: int) -> bool:
        """Whether optimizer step ``step`` (0-based) ends with a checkpoint (when the run
        has a checkpoint folder)."""
        done = step + 1
        return bool(self.checkpoint_every) and (
            done % self.checkpoint_every == 0 or done == self.steps
        )

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        scale = 1.0
        if self.warmup_steps:
            scale = min(scale, (step + 1) / self.warmup_steps)
        decay_steps = int(self.steps * self.decay_fraction)
        if decay_steps:
            scale = min(scale, (self.steps - step) / decay_steps)
        return self.lr * max(scale, 0.0)


@dataclass
class TrainResult:
    """What ``train_pair`` returns.

    Args:
        pair: the trained pair (kind ``"jsae"`` if λ > 0 else ``"plain"``).
        config: the settings it was trained with.
        step: optimizer steps done.
        tokens_seen: tokens trained on.
        history: one dict per ``log_every`` steps (loss terms, dead fractions, lr).
        dead_fraction_in, dead_fraction_out: features of each SAE not fired in the last
            ``dead_window_tokens`` tokens, at the end of training.
        variance_in, variance_out: the activations' total variances that normalise the MSE.
        checkpoints: the checkpoint files written, in order.
    """

    pair: JSAEPair
    config: PairTrainingConfig
    step: int
    tokens_seen: int
    history: list[dict[str, float]]
    dead_fraction_in: float
    dead_fraction_out: float
    variance_in: float
    variance_out: float
    checkpoints: list[Path] = field(default_factory=list)
