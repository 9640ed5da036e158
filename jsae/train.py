"""Training a JSAE pair (or a plain pair) on the MLP of one block of a TransformerLens model.

The two SAEs are sae-lens ``TopKSAE`` modules whose parameters are trained with a plain torch
loop. For a batch of tokens with MLP input x and MLP output y the loss is

    loss = FVU(x, SAE_in(x)) + FVU(y, SAE_out(y)) + λ · mean |J|

where ``FVU(x, x̂) = mean_t ||x_t - x̂_t||² / Var(x)`` is the reconstruction error as a
fraction of the activations' total variance ``Var(x) = E||x - E[x]||²`` (estimated once, on
the first block of activations, and kept fixed). Both reconstruction terms are therefore
``1 - explained variance`` and λ means the same on every layer and model, whatever the scale
of its activations. ``J`` is the ``k × k`` block of the Jacobian of the output SAE's active
pre-activations with respect to the input SAE's active activations (see
:mod:`jsae.sandwich`); its mean absolute value is taken over every token and every entry of
the block. It is computed with :func:`jsae.sandwich.active_jacobian` on rows of
``W_dec_in @ W_in`` and ``(W_out @ W_enc_out).T``, so gradients flow into the SAEs' weights;
the model and its MLP are frozen, ``act_fn'`` is evaluated on the *original* MLP input, and
the output SAE always reads the model's real MLP output (never the MLP of a reconstruction).
λ = 0 trains two independent TopK SAEs in exactly the same way: a plain pair.

Activations are read from the model as it goes (``run_with_cache`` up to block L), a block
of sequences at a time, shuffled within the block; the sequences' order is shuffled per
epoch. The stream is a deterministic function of the seed and the token position, so a run
resumed from a checkpoint sees exactly the batches the uninterrupted run would have seen.
After every step each decoder row is rescaled to unit norm. A feature is *dead* when it has
not fired during the last ``dead_window_tokens`` tokens; with ``aux_k`` > 0, Gao et al.'s
AuxK loss (the top ``aux_k`` dead features reconstruct the main reconstruction's error,
normalised like the FVU, weighted by ``aux_coefficient``) is added to revive them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from sae_lens import TopKSAE, TopKSAEConfig
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from jsae.errors import InputError, SourceError, UnsupportedError
from jsae.pair import JSAEPair, hook_in_name, hook_out_name, sae_pre_activations, topk_encode
from jsae.sandwich import MLPWeights, active_jacobian, get_mlp

CHECKPOINT_PREFIX = "step_"
CHECKPOINT_SUFFIX = ".pt"
# Fields that may differ between a checkpoint and the run that resumes it.
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every")


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


# --------------------------------------------------------------------------------------
# Tokens and the activation stream


def tokenize_documents(
    model: HookedTransformer, documents: Iterable[str] | str, context_size: int
) -> Int[Tensor, "n_seq ctx"]:
    """Concatenate ``documents`` separated by BOS and cut into rows of ``context_size``
    tokens, each starting with BOS (the model's tokenizer must have a BOS token)."""
    tokenizer = model.tokenizer
    if tokenizer is None or tokenizer.bos_token_id is None:
        raise InputError("The model needs a tokenizer with a BOS token to read text.")
    if isinstance(documents, str):
        documents = [documents]
    bos = tokenizer.bos_token_id
    documents = [doc for doc in documents if doc]
    ids: list[int] = []
    for start in range(0, len(documents), 512):
        encoded = tokenizer(documents[start : start + 512], add_special_tokens=False)
        for doc_ids in encoded["input_ids"]:
            ids.append(bos)
            ids.extend(doc_ids)
    return chunk_token_ids(torch.tensor(ids, dtype=torch.long), context_size, bos)


def chunk_token_ids(ids: Int[Tensor, " n"], context_size: int, bos: int) -> Int[Tensor, "n ctx"]:
    """Rows of BOS + ``context_size - 1`` tokens (an incomplete last row is dropped)."""
    body = context_size - 1
    n = len(ids) // body
    rows = ids[: n * body].reshape(n, body)
    return torch.cat([torch.full((n, 1), bos, dtype=rows.dtype), rows], dim=1)


class ActivationStream:
    """One layer's (MLP input, MLP output) activations, in a seeded, seekable order.

    Epoch e visits the sequences in a random order (seeded by ``(seed, e)``), a block of
    ``block_sequences`` at a time; a block's tokens are shuffled together (seeded by
    ``(seed, e, b)``) and concatenated into one endless stream of tokens. Token position p
    of the stream is a fixed function of the seed, so ``batches(start)`` can begin anywhere.
    """

    def __init__(
        self,
        model: HookedTransformer,
        tokens: Int[Tensor, "n_seq ctx"],
        layer: int,
        *,
        block_sequences: int,
        model_batch_size: int,
        seed: int,
        skip_bos: bool = True,
    ):
        if tokens.ndim != 2 or len(tokens) == 0:
            raise InputError("Need a non-empty [sequences, context] tensor of token ids.")
        self.model = model
        self.tokens = tokens
        self.layer = layer
        self.block_sequences = min(block_sequences, len(tokens))
        self.blocks_per_epoch = len(tokens) // self.block_sequences
        self.model_batch_size = model_batch_size
        self.seed = seed
        self.first = 1 if skip_bos else 0
        self.block_tokens = self.block_sequences * (tokens.shape[1] - self.first)
        self.hooks = [hook_in_name(layer), hook_out_name(layer)]

    @torch.no_grad()
    def block(self, index: int) -> tuple[Float[Tensor, "n d"], Float[Tensor, "n d"]]:
        epoch, b = divmod(index, self.blocks_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.tokens))
        rows = torch.from_numpy(order[b * self.block_sequences : (b + 1) * self.block_sequences])
        xs, ys = [], []
        device = self.model.cfg.device
        for start in range(0, len(rows), self.model_batch_size):
            batch = self.tokens[rows[start : start + self.model_batch_size]].to(device)
            _, cache = self.model.run_with_cache(
                batch, names_filter=self.hooks, stop_at_layer=self.layer + 1
            )
            xs.append(
                cache[self.hooks[0]][:, self.first :].reshape(-1, cache[self.hooks[0]].shape[-1])
            )
            ys.append(
                cache[self.hooks[1]][:, self.first :].reshape(-1, cache[self.hooks[1]].shape[-1])
            )
        x, y = torch.cat(xs), torch.cat(ys)
        shuffle = np.random.default_rng([self.seed, epoch, b]).permutation(len(x))
        shuffle_t = torch.from_numpy(shuffle).to(x.device)
        return x[shuffle_t].float(), y[shuffle_t].float()

    def batches(
        self, batch_tokens: int, start: int = 0
    ) -> Iterator[tuple[Float[Tensor, "b d"], Float[Tensor, "b d"]]]:
        """Endless batches of ``batch_tokens`` tokens, from stream position ``start``."""
        index, offset = divmod(start, self.block_tokens)
        x, y = self.block(index)
        x, y = x[offset:], y[offset:]
        while True:
            while len(x) < batch_tokens:
                index += 1
                nx, ny = self.block(index)
                x, y = torch.cat([x, nx]), torch.cat([y, ny])
            yield x[:batch_tokens], y[:batch_tokens]
            x, y = x[batch_tokens:], y[batch_tokens:]


# --------------------------------------------------------------------------------------
# The pair, its loss and its statistics


def new_pair(model: HookedTransformer, config: PairTrainingConfig) -> JSAEPair:
    """A freshly initialised pair (sae-lens init, unit-norm decoder rows, W_enc = W_dec.T)."""
    d_model = model.cfg.d_model
    saes = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for hook in (hook_in_name(config.layer), hook_out_name(config.layer)):
            cfg = TopKSAEConfig(
                d_in=d_model,
                d_sae=config.d_sae,
                k=config.k,
                apply_b_dec_to_input=config.apply_b_dec_to_input,
                device=str(model.cfg.device),
            )
            cfg.metadata.hook_name = hook
            cfg.metadata.model_name = model.cfg.model_name
            sae = TopKSAE(cfg).to(device=model.cfg.device, dtype=torch.float32)
            with torch.no_grad():
                sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True))
                sae.W_enc.copy_(sae.W_dec.T)
            saes.append(sae)
    return JSAEPair(saes[0], saes[1], layer=config.layer, kind=config.kind)


def decode_topk(
    sae: TopKSAE, values: Float[Tensor, "tokens k"], indices: Int[Tensor, "tokens k"]
) -> Float[Tensor, "tokens d_in"]:
    """``sae.decode`` of the sparse code (values at indices), by gathering k decoder rows."""
    return torch.einsum("tk,tkd->td", values, sae.W_dec[indices]) + sae.b_dec


def jacobian_products(
    pair: JSAEPair, mlp: MLPWeights
) -> tuple[Float[Tensor, "d_sae_in d_mlp"], Float[Tensor, "d_sae_out d_mlp"]]:
    """``W_dec_in @ W_in`` and ``(W_out @ W_enc_out).T``, differentiable in the SAEs."""
    return pair.sae_in.W_dec @ mlp.W_in, (mlp.W_out @ pair.sae_out.W_enc).T


@dataclass
class PairLoss:
    """One batch's loss terms (tensors, so the total can be back-propagated)."""

    total: Tensor
    fvu_in: Tensor
    fvu_out: Tensor
    jacobian_penalty: Tensor | None
    aux: Tensor
    in_idx: Tensor
    out_idx: Tensor
    in_act: Tensor
    out_act: Tensor


def pair_loss(
    pair: JSAEPair,
    mlp: MLPWeights,
    x: Float[Tensor, "tokens d_model"],
    y: Float[Tensor, "tokens d_model"],
    variance_in: float,
    variance_out: float,
    jacobian_coefficient: float,
    jacobian_tokens: int | None = None,
    with_penalty: bool = True,
    dead: tuple[Tensor, Tensor] | None = None,
    aux_k: int = 0,
    aux_coefficient: float = 0.0,
) -> PairLoss:
    """FVU_in + FVU_out + λ · mean |J| for MLP inputs ``x`` and the model's MLP outputs ``y``.

    The penalty is averaged over the first ``jacobian_tokens`` tokens of the batch (all when
    None). With λ = 0 it is computed without gradients, and only if ``with_penalty``.
    With ``aux_k`` and the ``dead`` masks of both SAEs, ``aux_coefficient`` times the AuxK
    losses (each normalised like its FVU) is added.
    """
    in_pre = sae_pre_activations(pair.sae_in, x)
    out_pre = sae_pre_activations(pair.sae_out, y)
    in_act, in_idx = _topk(in_pre, pair.sae_in.cfg.k)
    out_act, out_idx = _topk(out_pre, pair.sae_out.cfg.k)
    in_err = x - decode_topk(pair.sae_in, in_act, in_idx)
    out_err = y - decode_topk(pair.sae_out, out_act, out_idx)
    fvu_in = in_err.pow(2).sum(-1).mean() / variance_in
    fvu_out = out_err.pow(2).sum(-1).mean() / variance_out
    total = fvu_in + fvu_out
    aux = torch.zeros(())
    if aux_k and dead is not None:
        for sae, pre, err, mask, variance in (
            (pair.sae_in, in_pre, in_err, dead[0], variance_in),
            (pair.sae_out, out_pre, out_err, dead[1], variance_out),
        ):
            aux = aux + aux_k_loss(sae, pre, err, mask, aux_k) / variance
        total = total + aux_coefficient * aux
    penalty = None
    if jacobian_coefficient > 0 or with_penalty:
        # The penalty's tokens: all, or the first ``jacobian_tokens`` (the batch is shuffled).
        n = len(x) if jacobian_tokens is None else min(jacobian_tokens, len(x))
        # act_fn' at the original MLP input, never at a reconstruction.
        act_grad = mlp.act_grad(mlp.pre(x[:n]))
        with torch.set_grad_enabled(torch.is_grad_enabled() and jacobian_coefficient > 0):
            dec_in_W_in, enc_out_W_out = jacobian_products(pair, mlp)
            jacobian = active_jacobian(
                F.embedding(in_idx[:n], dec_in_W_in),  # = dec_in_W_in[in_idx], faster backward
                act_grad,
                F.embedding(out_idx[:n], enc_out_W_out),
            )
            penalty = jacobian.abs().mean()
        if jacobian_coefficient > 0:
            total = total + jacobian_coefficient * penalty
    return PairLoss(total, fvu_in, fvu_out, penalty, aux, in_idx, out_idx, in_act, out_act)


def _topk(pre: Float[Tensor, "tokens d_sae"], k: int) -> tuple[Tensor, Tensor]:
    """``topk_encode`` from given pre-activations: ReLU of the top k, largest first."""
    values, indices = torch.topk(pre, k=k, dim=-1, sorted=True)
    return values.relu(), indices


def aux_k_loss(
    sae: TopKSAE,
    pre: Float[Tensor, "tokens d_sae"],
    err: Float[Tensor, "tokens d_in"],
    dead: torch.Tensor,
    aux_k: int,
) -> Tensor:
    """Gao et al.'s AuxK: the top ``aux_k`` *dead* features reconstruct the main
    reconstruction's error (held fixed), so dead features get gradients and can revive."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return torch.zeros((), device=pre.device)
    masked = pre.masked_fill(~dead.to(pre.device), float("-inf"))
    values, indices = torch.topk(masked, k=min(aux_k, n_dead), dim=-1)
    estimate = torch.einsum("tk,tkd->td", values.relu(), sae.W_dec[indices])
    return (estimate - err.detach()).pow(2).sum(-1).mean()


@torch.no_grad()
def normalize_decoder(sae: TopKSAE) -> None:
    """Rescale every decoder row to unit norm."""
    sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def total_variance(x: Float[Tensor, "tokens d"]) -> float:
    """E||x - E[x]||², the denominator of the FVU and of explained variance."""
    return float((x - x.mean(0)).pow(2).sum(-1).mean())


@torch.no_grad()
def explained_variance(sae: TopKSAE, x: Float[Tensor, "tokens d"]) -> float:
    """1 - sum ||x - SAE(x)||² / sum ||x - mean(x)||² over the tokens of ``x``."""
    x = x.float()
    values, indices = topk_encode(sae, x)
    residual = (decode_topk(sae, values, indices) - x).pow(2).sum()
    return float(1 - residual / (x - x.mean(0)).pow(2).sum())


class FiringTracker:
    """When each feature last fired, counted in tokens, for the dead-feature fraction."""

    def __init__(self, d_sae: int, window: int):
        self.window = window
        # as if every feature fired at the start: none is dead before ``window`` tokens
        self.last_fired = torch.zeros(d_sae, dtype=torch.long)

    def update(self, idx: Int[Tensor, "tokens k"], act: Float[Tensor, "tokens k"], seen: int):
        fired = idx[act > 0].unique().cpu()
        self.last_fired[fired] = seen

    def dead(self, seen: int) -> Tensor:
        """Features that have not fired in the last ``window`` tokens."""
        return (seen - self.last_fired) > self.window

    def dead_fraction(self, seen: int) -> float:
        return float(self.dead(seen).float().mean())


# --------------------------------------------------------------------------------------
# The loop


def check_folded_norm(model: HookedTransformer) -> None:
    """The input SAE reads ``ln2.hook_normalized``, which is the MLP's input only when the
    LayerNorm's weight and bias are folded into the next layer (``LNPre``/``RMSPre``, as
    ``from_pretrained`` and ``process_weights_(fold_ln=True)`` leave a model)."""
    norm = model.cfg.normalization_type
    if norm not in ("LNPre", "RMSPre"):
        raise UnsupportedError(
            f"The model's normalization_type is {norm!r}: its MLP input is not "
            "ln2.hook_normalized, which the input SAE reads. Fold the LayerNorm weights "
            "first (model.process_weights_(fold_ln=True)), or load it with from_pretrained."
        )


def train_pair(
    model: HookedTransformer,
    data: Int[Tensor, "n_seq ctx"] | Iterable[str] | str,
    config: PairTrainingConfig,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    resume_from: str | os.PathLike | None = None,
    wandb_mode: str | None = None,
    wandb_project: str = "jsae",
    wandb_name: str | None = None,
    progress: bool = True,
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a pair around block ``config.layer``'s MLP of ``model`` on ``data``.

    ``data`` is text (a string or documents) or token ids ``[sequences, context]`` whose
    rows start with BOS. The model is frozen (its parameters are not touched).
    ``checkpoint_dir`` receives ``step_XXXXXX.pt`` every ``config.checkpoint_every`` steps
    (pair, optimizer, step, the stream position and dead-feature counters);
    ``resume_from`` (such a file, or a folder of them: the latest is used) continues a run
    exactly where it stopped. ``wandb_mode`` (``"online"``, ``"offline"``, ``"disabled"``)
    logs the history to W&B with ``wandb.init(mode=...)``; None logs nothing.
    """
    if not 0 <= config.layer < model.cfg.n_layers:
        raise InputError(f"Layer {config.layer} does not exist (0..{model.cfg.n_layers - 1}).")
    get_mlp(model, config.layer)  # refuses unsupported MLPs early
    check_folded_norm(model)
    if isinstance(data, Tensor):
        tokens = data.long()
        if tokens.ndim == 1:
            tokens = tokens[None]
    else:
        tokens = tokenize_documents(model, data, config.context_size)
    if len(tokens) == 0:
        raise InputError("Not enough text to fill one sequence of the context size.")
    stream = ActivationStream(
        model,
        tokens[:, : config.context_size],
        config.layer,
        block_sequences=config.block_sequences,
        model_batch_size=config.model_batch_size,
        seed=config.seed,
        skip_bos=config.skip_bos,
    )
    mlp = MLPWeights.from_model(model, config.layer)
    pair = new_pair(model, config)
    params = [*pair.sae_in.parameters(), *pair.sae_out.parameters()]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    trackers = (
        FiringTracker(config.d_sae, config.dead_window_tokens),
        FiringTracker(config.d_sae, config.dead_window_tokens),
    )
    step, history = 0, []
    if resume_from is not None:
        state = _load_checkpoint(resume_from, config)
        pair.sae_in.load_state_dict(state["sae_in"])
        pair.sae_out.load_state_dict(state["sae_out"])
        optimizer.load_state_dict(state["optimizer"])
        trackers[0].last_fired = state["last_fired_in"]
        trackers[1].last_fired = state["last_fired_out"]
        step, history = state["step"], state["history"]
        variance_in, variance_out = state["variance_in"], state["variance_out"]
        running = state["running"]
    else:
        running = {}
        # Statistics of the first block: the FVU's denominators and the decoder biases' init.
        x0, y0 = stream.block(0)
        variance_in, variance_out = total_variance(x0), total_variance(y0)
        with torch.no_grad():
            pair.sae_in.b_dec.copy_(x0.mean(0))
            pair.sae_out.b_dec.copy_(y0.mean(0))
        del x0, y0

    run = None
    if wandb_mode is not None:
        import wandb

        run = wandb.init(
            project=wandb_project,
            name=wandb_name or f"layer{config.layer}-{config.kind}",
            mode=wandb_mode,
            config={**asdict(config), "model": model.cfg.model_name},
        )
    checkpoint_path = Path(checkpoint_dir) if checkpoint_dir is not None else None
    written: list[Path] = []
    bar = tqdm(
        total=config.steps,
        initial=step,
        disable=not progress,
        desc=f"layer {config.layer} {config.kind}",
        dynamic_ncols=True,
    )
    batches = stream.batches(config.batch_tokens, start=step * config.batch_tokens)
    # running sums of the loss terms since the last history entry (kept in checkpoints)
    sums = {"loss": 0.0, "fvu_in": 0.0, "fvu_out": 0.0, "aux": 0.0, "jacobian_penalty": 0.0}
    sums.update(running.get("sums", {}))
    n_sum, n_penalty = running.get("n_sum", 0), running.get("n_penalty", 0)
    try:
        while step < config.steps:
            x, y = next(batches)
            seen = step * config.batch_tokens
            lr = config.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            logging = (step + 1) % config.log_every == 0 or step + 1 == config.steps
            loss = pair_loss(
                pair,
                mlp,
                x,
                y,
                variance_in,
                variance_out,
                config.coefficient_at(step),
                jacobian_tokens=config.jacobian_tokens,
                with_penalty=logging,
                dead=(trackers[0].dead(seen), trackers[1].dead(seen)) if step else None,
                aux_k=config.aux_k,
                aux_coefficient=config.aux_coefficient,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            optimizer.step()
            normalize_decoder(pair.sae_in)
            normalize_decoder(pair.sae_out)
            step += 1
            seen = step * config.batch_tokens
            trackers[0].update(loss.in_idx, loss.in_act.detach(), seen)
            trackers[1].update(loss.out_idx, loss.out_act.detach(), seen)
            for key, value in (
                ("loss", loss.total),
                ("fvu_in", loss.fvu_in),
                ("fvu_out", loss.fvu_out),
                ("aux", loss.aux),
            ):
                sums[key] += value.item()
            n_sum += 1
            if loss.jacobian_penalty is not None:
                sums["jacobian_penalty"] += loss.jacobian_penalty.item()
                n_penalty += 1
            if logging:
                entry = {
                    "step": step,
                    "tokens": seen,
                    "lr": lr,
                    "jacobian_coefficient": config.coefficient_at(step - 1),
                }
                entry.update(
                    {key: sums[key] / n_sum for key in ("loss", "fvu_in", "fvu_out", "aux")}
                )
                entry["jacobian_penalty"] = sums["jacobian_penalty"] / max(n_penalty, 1)
                entry["dead_in"] = trackers[0].dead_fraction(seen)
                entry["dead_out"] = trackers[1].dead_fraction(seen)
                history.append(entry)
                sums = dict.fromkeys(sums, 0.0)
                n_sum = n_penalty = 0
                bar.set_postfix(
                    loss=f"{entry['loss']:.3f}",
                    ev_in=f"{1 - entry['fvu_in']:.3f}",
                    ev_out=f"{1 - entry['fvu_out']:.3f}",
                    J=f"{entry['jacobian_penalty']:.4f}",
                    dead=f"{entry['dead_in']:.2f}/{entry['dead_out']:.2f}",
                )
                if run is not None:
                    run.log(entry, step=step)
                if on_log is not None:
                    on_log(entry)
            bar.update(1)
            if (
                checkpoint_path is not None
                and config.checkpoint_every
                and (step % config.checkpoint_every == 0 or step == config.steps)
            ):
                written.append(
                    _save_checkpoint(
                        checkpoint_path,
                        config,
                        pair,
                        optimizer,
                        step,
                        history,
                        trackers,
                        variance_in,
                        variance_out,
                        {"sums": dict(sums), "n_sum": n_sum, "n_penalty": n_penalty},
                    )
                )
    finally:
        bar.close()
        if run is not None:
            run.finish()
    seen = step * config.batch_tokens
    pair.sae_in.eval()
    pair.sae_out.eval()
    return TrainResult(
        pair=pair,
        config=config,
        step=step,
        tokens_seen=seen,
        history=history,
        dead_fraction_in=trackers[0].dead_fraction(seen),
        dead_fraction_out=trackers[1].dead_fraction(seen),
        variance_in=variance_in,
        variance_out=variance_out,
        checkpoints=written,
    )


# --------------------------------------------------------------------------------------
# Checkpoints


def _save_checkpoint(
    folder: Path,
    config: PairTrainingConfig,
    pair: JSAEPair,
    optimizer: torch.optim.Optimizer,
    step: int,
    history: list[dict[str, float]],
    trackers: tuple[FiringTracker, FiringTracker],
    variance_in: float,
    variance_out: float,
    running: dict[str, Any],
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{CHECKPOINT_PREFIX}{step:06d}{CHECKPOINT_SUFFIX}"
    state = {
        "config": asdict(config),
        "step": step,
        "sae_in": pair.sae_in.state_dict(),
        "sae_out": pair.sae_out.state_dict(),
        "optimizer": optimizer.state_dict(),
        "history": history,
        "last_fired_in": trackers[0].last_fired.clone(),
        "last_fired_out": trackers[1].last_fired.clone(),
        "variance_in": variance_in,
        "variance_out": variance_out,
        "running": running,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``folder``, or None."""
    found = sorted(Path(folder).glob(f"{CHECKPOINT_PREFIX}*{CHECKPOINT_SUFFIX}"))
    return found[-1] if found else None


def _load_checkpoint(path: str | os.PathLike, config: PairTrainingConfig) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise SourceError(
                f"{path} holds no {CHECKPOINT_PREFIX}*{CHECKPOINT_SUFFIX} checkpoint."
            )
        path = found
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SourceError(f"Checkpoint {path} does not exist.") from None
    except Exception as err:  # pickle and zip errors of a corrupt file
        raise SourceError(f"Checkpoint {path} could not be read: {err}") from None
    saved = state.get("config", {})
    differing = [
        f.name
        for f in fields(PairTrainingConfig)
        if f.name not in RESUMABLE_CHANGES and saved.get(f.name) != getattr(config, f.name)
    ]
    if differing:
        details = ", ".join(f"{n}: {saved.get(n)!r} -> {getattr(config, n)!r}" for n in differing)
        raise InputError(
            f"Checkpoint {path} was trained with other settings ({details}); resume with the "
            "same settings (only steps, checkpoint_every and log_every may change)."
        )
    return state


def history_json(result: TrainResult) -> str:
    """The training history and summary as JSON text (for logs and bundles)."""
    return json.dumps(
        {
            "config": asdict(result.config),
            "step": result.step,
            "dead_fraction_in": result.dead_fraction_in,
            "dead_fraction_out": result.dead_fraction_out,
            "history": result.history,
        },
        indent=2,
    )
