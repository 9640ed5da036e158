"""Training a JSAE pair (or a plain pair) on the MLP of one block of a TransformerLens model.

Shaped like SAELens's ``SAETrainer``: :class:`PairTrainer` holds a run (its config, the
activation stream, the frozen MLP and a :class:`~jsae.train.checkpoint.TrainState`), and
``fit`` loops over ``train_step`` (one optimizer step), ``log`` (a history entry every
``log_every`` steps) and checkpoints. :func:`train_pair` runs one, logged to W&B if asked.

The two SAEs are sae-lens ``TopKSAE`` modules trained with Adam on the loss of
:mod:`jsae.train.losses` (the config's objective); the model and its MLP are frozen. λ = 0
trains two independent TopK SAEs in exactly the same way: a plain pair. Before the first step
the FVU's variances (``Var(x) = E||x - E[x]||²``) are estimated on the first block of
activations and kept fixed, and the decoder biases start at zero (``b_dec_init`` ``zeros``, as
the research code) or at that block's means (``mean``). Each step clips the gradient of both
SAEs together to ``max_grad_norm`` (the research code's 1.0), steps Adam, and rescales every
decoder row to unit norm (the research code rescales before each forward pass instead, the
same up to the final state). A feature is *dead* when it has not fired during the last
``dead_window_tokens`` tokens; with ``aux_k`` > 0 the AuxK loss revives dead features.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from jsae.errors import InputError
from jsae.pair import JSAEPair
from jsae.sandwich import MLPWeights, get_mlp
from jsae.train.checkpoint import TrainState, load_checkpoint, resume, save_checkpoint
from jsae.train.config import PairTrainingConfig, TrainResult
from jsae.train.data import ActivationStream, training_tokens
from jsae.train.losses import PairLoss, pair_loss
from jsae.train.metrics import FiringTracker, total_variance
from jsae.train.saes import new_pair, normalize_decoder


class PairTrainer:
    """One run: a new pair (or the one of a checkpoint) trained on ``data`` (see module doc).

    Args:
        model: frozen; block ``config.layer`` must have a supported MLP (LayerNorm folded or not).
        data: text (a string or documents) or token ids ``[sequences, context]`` whose rows
            start with BOS.
        config: the run's settings.
        checkpoint_dir: receives ``step_XXXXXX.pt`` every ``config.checkpoint_every`` steps.
        resume_from: a checkpoint file, or a folder of them (the latest is used), to continue.
        on_log: called with every history entry.
    """

    def __init__(
        self,
        model: HookedTransformer,
        data: Int[Tensor, "n_seq ctx"] | Iterable[str] | str,
        config: PairTrainingConfig,
        *,
        checkpoint_dir: str | os.PathLike | None = None,
        resume_from: str | os.PathLike | None = None,
        on_log: Callable[[dict[str, float]], None] | None = None,
    ):
        if not 0 <= config.layer < model.cfg.n_layers:
            raise InputError(f"Layer {config.layer} does not exist (0..{model.cfg.n_layers - 1}).")
        get_mlp(model, config.layer)  # refuses unsupported MLPs early
        tokens = training_tokens(model, data, config.context_size)
        self.config = config
        self.stream = ActivationStream(
            model,
            tokens[:, : config.context_size],
            config.layer,
            block_sequences=config.block_sequences,
            model_batch_size=config.model_batch_size,
            seed=config.seed,
            skip_bos=config.skip_bos,
        )
        self.mlp = MLPWeights.from_model(model, config.layer)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoints: list[Path] = []
        self.on_log = on_log
        pair = new_pair(model, config)
        optimizer = torch.optim.Adam(
            [*pair.sae_in.parameters(), *pair.sae_out.parameters()], lr=config.lr
        )
        trackers = (
            FiringTracker(config.d_sae, config.dead_window_tokens),
            FiringTracker(config.d_sae, config.dead_window_tokens),
        )
        if resume_from is None:
            self.state = self._start(pair, optimizer, trackers)
        else:
            self.state = resume(load_checkpoint(resume_from, config), pair, optimizer, trackers)

    def _start(
        self,
        pair: JSAEPair,
        optimizer: torch.optim.Optimizer,
        trackers: tuple[FiringTracker, FiringTracker],
    ) -> TrainState:
        """A fresh run: the first block's statistics give the FVU's denominators and, with
        ``b_dec_init`` ``mean``, the decoder biases' initial values (sae-lens starts them at 0)."""
        x0, y0 = self.stream.block(0)
        if self.config.b_dec_init == "mean":
            with torch.no_grad():
                pair.sae_in.b_dec.copy_(x0.mean(0))
                pair.sae_out.b_dec.copy_(y0.mean(0))
        return TrainState(pair, optimizer, trackers, total_variance(x0), total_variance(y0))

    @property
    def tokens_seen(self) -> int:
        return self.state.step * self.config.batch_tokens

    def fit(self, *, progress: bool = True, run: Any = None) -> TrainResult:
        """Train from the state's step to ``config.steps``; ``run`` (a W&B run) gets every
        history entry."""
        config, state = self.config, self.state
        bar = tqdm(
            total=config.steps,
            initial=state.step,
            disable=not progress,
            desc=f"layer {config.layer} {config.kind} ({config.objective}, λ={config.jacobian_coefficient:g})",
            dynamic_ncols=True,
        )
        batches = self.stream.batches(config.batch_tokens, start=self.tokens_seen)
        try:
            while state.step < config.steps:
                x, y = next(batches)
                step = state.step
                self.train_step(x, y, with_penalty=config.logs_after(step))
                if config.logs_after(step):
                    entry = self.log()
                    bar.set_postfix(**_postfix(entry))
                    if run is not None:
                        run.log(entry, step=state.step)
                    if self.on_log is not None:
                        self.on_log(entry)
                bar.update(1)
                if self.checkpoint_dir is not None and config.checkpoints_after(step):
                    self.checkpoints.append(save_checkpoint(self.checkpoint_dir, config, state))
        finally:
            bar.close()
        return self.result()

    def train_step(
        self,
        x: Float[Tensor, "tokens d_model"],
        y: Float[Tensor, "tokens d_model"],
        *,
        with_penalty: bool,
    ) -> PairLoss:
        """One optimizer step on MLP inputs ``x`` and outputs ``y``: the loss (with the
        penalty computed even at λ = 0 when ``with_penalty``), the gradient clipped, Adam,
        unit-norm decoder rows, then the firing counters and the terms' running means."""
        config, state = self.config, self.state
        pair, trackers = state.pair, state.trackers
        for group in state.optimizer.param_groups:
            group["lr"] = config.lr_at(state.step)
        seen = self.tokens_seen
        loss = pair_loss(
            pair,
            self.mlp,
            x,
            y,
            state.variance_in,
            state.variance_out,
            config.coefficient_at(state.step),
            jacobian_tokens=config.jacobian_tokens,
            with_penalty=with_penalty,
            dead=(trackers[0].dead(seen), trackers[1].dead(seen)) if state.step else None,
            aux_k=config.aux_k,
            aux_coefficient=config.aux_coefficient,
            objective=config.objective,
            below_threshold=config.penalty_below,
        )
        state.optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        if config.max_grad_norm is not None:
            parameters = [*pair.sae_in.parameters(), *pair.sae_out.parameters()]
            torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        state.optimizer.step()
        normalize_decoder(pair.sae_in)
        normalize_decoder(pair.sae_out)
        state.step += 1
        trackers[0].update(loss.in_idx, loss.in_act.detach(), self.tokens_seen)
        trackers[1].update(loss.out_idx, loss.out_act.detach(), self.tokens_seen)
        state.averages.add(loss.terms())
        return loss

    def log(self) -> dict[str, float]:
        """Close the running means into a history entry for the step just done."""
        config, state = self.config, self.state
        seen, done = self.tokens_seen, state.step - 1
        entry = {
            "step": state.step,
            "tokens": seen,
            "lr": config.lr_at(done),
            "jacobian_coefficient": config.coefficient_at(done),
        }
        entry.update(state.averages.means())
        entry["dead_in"] = state.trackers[0].dead_fraction(seen)
        entry["dead_out"] = state.trackers[1].dead_fraction(seen)
        state.history.append(entry)
        state.averages.reset()
        return entry

    def result(self) -> TrainResult:
        """The run as it stands, its SAEs in eval mode."""
        state, seen = self.state, self.tokens_seen
        state.pair.sae_in.eval()
        state.pair.sae_out.eval()
        return TrainResult(
            pair=state.pair,
            config=self.config,
            step=state.step,
            tokens_seen=seen,
            history=state.history,
            dead_fraction_in=state.trackers[0].dead_fraction(seen),
            dead_fraction_out=state.trackers[1].dead_fraction(seen),
            variance_in=state.variance_in,
            variance_out=state.variance_out,
            checkpoints=self.checkpoints,
        )


def _postfix(entry: dict[str, float]) -> dict[str, str]:
    """The progress bar's summary of a history entry."""
    return {
        "loss": f"{entry['loss']:.3f}",
        "ev_in": f"{1 - entry['fvu_in']:.3f}",
        "ev_out": f"{1 - entry['fvu_out']:.3f}",
        "J": f"{entry['jacobian_penalty']:.4f}",
        "dead": f"{entry['dead_in']:.2f}/{entry['dead_out']:.2f}",
    }


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
    trainer = PairTrainer(
        model,
        data,
        config,
        checkpoint_dir=checkpoint_dir,
        resume_from=resume_from,
        on_log=on_log,
    )
    run = None
    if wandb_mode is not None:
        # wandb is slow to import: only runs that log to W&B pay for it
        import wandb

        run = wandb.init(
            project=wandb_project,
            name=wandb_name or f"layer{config.layer}-{config.kind}",
            mode=wandb_mode,
            config={**asdict(config), "model": model.cfg.model_name},
        )
    try:
        return trainer.fit(progress=progress, run=run)
    finally:
        if run is not None:
            run.finish()
