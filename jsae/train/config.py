"""How a pair is trained (``PairTrainingConfig``) and what training returns (``TrainResult``).

The config validates itself and owns the run's schedules: the learning rate (linear warm-up
from 0, then constant, then a linear decay to 0 over the last ``decay_fraction`` of the steps),
λ (0 before the warm start ends, then a linear warm-up over ``jacobian_warmup_steps``), and
the steps that end with a history entry or a checkpoint.

**Objectives** (``objective``; the loss of each is in :mod:`jsae.train.losses`). With MLP
input x, MLP output y, reconstructions x̂, ŷ and J the ``k_out × k_in`` Jacobian of the
output SAE's active pre-activations with respect to the input SAE's active activations:

* ``research`` (the default): the research code's loss, ``MSE(x, x̂) + MSE(y, ŷ) + λ·mean|J|``
  with ``MSE`` the mean squared error over tokens *and* dimensions (raw activation units) and
  ``mean|J|`` over every token and entry; λ = 0.5·k²/d_model is its authors' rule of thumb;
* ``fvu``: jsae's first objective (the bundled default's pairs), ``FVU(x, x̂) + FVU(y, ŷ) +
  λ·mean|J|``, each reconstruction error divided by the activations' total variance;
* ``warm_start``: ``research``'s loss, but λ is 0 for the first ``warm_start_fraction`` of the
  steps (a plain pair: the output code learns graded activations first), then warms up;
* ``below_threshold``: ``research`` with the penalty also over the ``below_threshold``
  inactive output features just below the top-k threshold (their Jacobian rows are as large as
  the active ones' on a flat code, and a perturbation swaps them in): Σ|J| over the
  ``(k_out + below_threshold) × k_in`` block divided by ``tokens · k_out · k_in``, so λ means
  what it means for ``research`` and the extra rows only add;
* ``normalized``: ``research`` with each token's |J| divided by its root mean square, mean over
  tokens of ``mean|J_t| / rms(J_t)`` (the authors' later ``l1nt`` option): scale-free, so it
  cannot be lowered by shrinking the output encoder, only by concentrating J.

``BUNDLE_V1`` holds the settings that reproduce how jsae trained the bundled default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from jsae.errors import InputError
from jsae.pair import JSAEPair

OBJECTIVES = ("research", "fvu", "warm_start", "below_threshold", "normalized")
"""The losses a pair can be trained with (see the module docstring)."""
DEFAULT_OBJECTIVE = "research"
B_DEC_INITS = ("zeros", "mean")
"""``zeros`` (the research code's), ``mean`` (the first block's mean activation)."""
ENCODER_INITS = ("decoder_transpose", "unit_decoder_transpose")
"""W_enc starts as the decoder's transpose before its rows are normalised (sae-lens's and the
research code's init: columns of norm about √2), or after (jsae's first init: unit columns)."""
DEFAULT_WARM_START_FRACTION = 0.5
"""``warm_start``: the share of the steps trained with λ = 0 unless ``warm_start_fraction`` says."""
LR_WARMUP_FRACTION = 0.01
"""The research code's learning-rate warm-up: 1% of the steps (``warmup_steps`` None)."""
JACOBIAN_WARMUP_FRACTION = 0.05
"""The research code's λ warm-up: 5% of the steps (``jacobian_warmup_steps`` None)."""

BUNDLE_V1: dict[str, object] = {
    "objective": "fvu",
    "max_grad_norm": None,
    "b_dec_init": "mean",
    "encoder_init": "unit_decoder_transpose",
    "apply_b_dec_to_input": True,
    "jacobian_warmup_steps": 0,
}
"""The settings, besides the demo's own, that jsae trained the bundled default's pairs with
before ``research`` became the default: ``PairTrainingConfig(**BUNDLE_V1, ...)`` reproduces
them exactly."""


@dataclass(frozen=True)
class PairTrainingConfig:
    """How to train one pair around the MLP of block ``layer``.

    Args:
        layer: the block whose MLP the pair surrounds.
        d_sae: features of each SAE.
        k: active features per token of each SAE.
        jacobian_coefficient: λ, the weight of the Jacobian penalty; 0 trains a plain pair.
        objective: the loss, one of ``OBJECTIVES`` (see the module docstring).
        lr: Adam's learning rate (after warm-up, before the final decay; the research
            code's 5e-4 by default).
        batch_tokens: tokens per optimizer step.
        steps: optimizer steps in all.
        seed: seeds the SAEs' initialisation and the order of the activation stream.
        context_size: tokens per sequence fed to the model (BOS included).
        model_batch_size: sequences per forward pass of the model.
        block_sequences: sequences whose activations are read, shuffled and used together
            (the shuffle buffer: ``block_sequences * (context_size - 1)`` tokens).
        skip_bos: leave out the BOS position's activations (an outlier in most models).
        warmup_steps: linear learning-rate warm-up from 0 (None: 1% of the steps, as the
            research code).
        decay_fraction: the learning rate decays linearly to 0 over this last fraction of
            the steps.
        apply_b_dec_to_input: subtract the decoder bias before encoding (sae-lens option; the
            research code does not).
        jacobian_warmup_steps: λ grows linearly from 0 to ``jacobian_coefficient`` over
            these steps (after the warm start, if any; 0: the full λ at once; None: 5% of
            the steps, as the research code).
        max_grad_norm: clip the gradient of both SAEs' parameters together to this norm
            before each step (the research code's 1.0); None: no clipping.
        b_dec_init: the decoder biases' start, one of ``B_DEC_INITS``.
        encoder_init: the encoders' start, one of ``ENCODER_INITS``.
        warm_start_fraction: ``warm_start`` only: the share of the steps with λ = 0 (None:
            ``DEFAULT_WARM_START_FRACTION``).
        below_threshold: ``below_threshold`` only: the inactive output features just below
            the threshold that the penalty also covers (None: k).
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
    objective: str = DEFAULT_OBJECTIVE
    lr: float = 5e-4
    batch_tokens: int = 1024
    steps: int = 1000
    seed: int = 0
    context_size: int = 256
    model_batch_size: int = 16
    block_sequences: int = 64
    skip_bos: bool = True
    warmup_steps: int | None = None
    decay_fraction: float = 0.2
    apply_b_dec_to_input: bool = False
    jacobian_tokens: int | None = None
    jacobian_warmup_steps: int | None = None
    max_grad_norm: float | None = 1.0
    b_dec_init: str = "zeros"
    encoder_init: str = "decoder_transpose"
    warm_start_fraction: float | None = None
    below_threshold: int | None = None
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
        if min(self.steps, self.checkpoint_every) < 0:
            raise InputError("steps and checkpoint_every cannot be negative.")
        for name in ("warmup_steps", "jacobian_warmup_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InputError(f"{name} must be an integer >= 0 or None, got {value!r}.")
        for name, allowed in (
            ("objective", OBJECTIVES),
            ("b_dec_init", B_DEC_INITS),
            ("encoder_init", ENCODER_INITS),
        ):
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}."
                )
        self._check_objective_settings()
        if self.max_grad_norm is not None and not (
            self.max_grad_norm > 0 and math.isfinite(self.max_grad_norm)
        ):
            raise InputError("max_grad_norm must be a finite number > 0, or None (no clipping).")
        if not (self.jacobian_coefficient >= 0 and math.isfinite(self.jacobian_coefficient)):
            raise InputError("jacobian_coefficient (λ) must be a finite number >= 0.")
        if not 0 <= self.decay_fraction <= 1:
            raise InputError("decay_fraction must lie in [0, 1].")
        if self.jacobian_tokens is not None and self.jacobian_tokens <= 0:
            raise InputError("jacobian_tokens must be a positive integer or None.")
        if self.context_size < 2:
            raise InputError("context_size must be at least 2 (BOS and one token).")

    def _check_objective_settings(self) -> None:
        """``warm_start_fraction`` and ``below_threshold`` belong to one objective each."""
        for name, owner in (
            ("warm_start_fraction", "warm_start"),
            ("below_threshold", "below_threshold"),
        ):
            if getattr(self, name) is not None and self.objective != owner:
                raise InputError(
                    f"{name} only applies to objective {owner!r}, not {self.objective!r}: "
                    f"leave it None or set objective={owner!r}."
                )
        if self.warm_start_fraction is not None and not 0 < self.warm_start_fraction < 1:
            raise InputError("warm_start_fraction must lie strictly between 0 and 1.")
        if self.below_threshold is not None and (
            not isinstance(self.below_threshold, int) or self.below_threshold <= 0
        ):
            raise InputError("below_threshold must be a positive integer (or None: k).")
        if self.objective == "below_threshold" and self.k + self.penalty_below > self.d_sae:
            raise InputError(
                f"k + below_threshold = {self.k + self.penalty_below} exceeds d_sae={self.d_sae}."
            )

    @property
    def kind(self) -> str:
        return "jsae" if self.jacobian_coefficient > 0 else "plain"

    @property
    def lr_warmup(self) -> int:
        """Learning-rate warm-up steps (``warmup_steps``, or 1% of the steps when None)."""
        if self.warmup_steps is None:
            return int(self.steps * LR_WARMUP_FRACTION)
        return self.warmup_steps

    @property
    def jacobian_warmup(self) -> int:
        """λ warm-up steps (``jacobian_warmup_steps``, or 5% of the steps when None)."""
        if self.jacobian_warmup_steps is None:
            return int(self.steps * JACOBIAN_WARMUP_FRACTION)
        return self.jacobian_warmup_steps

    @property
    def penalty_start(self) -> int:
        """The first step with λ > 0 (``warm_start``'s plain steps come before it)."""
        if self.objective != "warm_start":
            return 0
        fraction = self.warm_start_fraction
        return int(self.steps * (DEFAULT_WARM_START_FRACTION if fraction is None else fraction))

    @property
    def penalty_below(self) -> int:
        """Inactive output features below the threshold that the penalty covers."""
        if self.objective != "below_threshold":
            return 0
        return self.k if self.below_threshold is None else self.below_threshold

    def coefficient_at(self, step: int) -> float:
        """λ at optimizer step ``step`` (0-based): 0 before ``penalty_start``, then warmed up."""
        step -= self.penalty_start
        if step < 0:
            return 0.0
        if self.jacobian_warmup:
            return self.jacobian_coefficient * min(1.0, (step + 1) / self.jacobian_warmup)
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
        if self.lr_warmup:
            scale = min(scale, (step + 1) / self.lr_warmup)
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
