"""A run's state, and its checkpoints: ``step_XXXXXX.pt`` files a run can resume from.

A checkpoint holds everything that decides the rest of the run (the SAEs, Adam's moments, the
step, which fixes the activation stream's position, the history, the dead-feature counters,
the FVU's variances and the running means of the loss terms), so a resumed run ends exactly
where the uninterrupted run would have. It is refused when it was trained with other settings
than the resuming run's, except those of ``RESUMABLE_CHANGES``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from jsae.errors import InputError, SourceError
from jsae.pair import JSAEPair
from jsae.train.config import BUNDLE_V1, PairTrainingConfig
from jsae.train.metrics import FiringTracker, TermAverages

CHECKPOINT_PREFIX = "step_"
CHECKPOINT_SUFFIX = ".pt"
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every")
"""Fields that may differ between a checkpoint and the run that resumes it."""
BEFORE_OBJECTIVES = {
    **{
        name: BUNDLE_V1[name]
        for name in ("objective", "max_grad_norm", "b_dec_init", "encoder_init")
    },
    "warm_start_fraction": None,
    "below_threshold": None,
}
"""What a checkpoint written before the objectives existed (without these settings) was
trained with."""


@dataclass
class TrainState:
    """Everything a run carries from one step to the next.

    Args:
        pair, optimizer: the SAEs being trained and their Adam optimizer.
        trackers: when each feature of the input and of the output SAE last fired.
        variance_in, variance_out: the FVU's denominators, fixed for the run.
        step: optimizer steps done.
        history: the log entries so far.
        averages: the loss terms' running means since the last entry.
    """

    pair: JSAEPair
    optimizer: torch.optim.Optimizer
    trackers: tuple[FiringTracker, FiringTracker]
    variance_in: float
    variance_out: float
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    averages: TermAverages = field(default_factory=TermAverages)


def save_checkpoint(folder: Path, config: PairTrainingConfig, state: TrainState) -> Path:
    """Write ``folder/step_XXXXXX.pt`` (atomically: a ``.tmp`` file renamed into place)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{CHECKPOINT_PREFIX}{state.step:06d}{CHECKPOINT_SUFFIX}"
    saved = {
        "config": asdict(config),
        "step": state.step,
        "sae_in": state.pair.sae_in.state_dict(),
        "sae_out": state.pair.sae_out.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "history": state.history,
        "last_fired_in": state.trackers[0].last_fired.clone(),
        "last_fired_out": state.trackers[1].last_fired.clone(),
        "variance_in": state.variance_in,
        "variance_out": state.variance_out,
        "running": state.averages.state(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(saved, tmp)
    tmp.replace(path)
    return path


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``folder``, or None."""
    found = sorted(Path(folder).glob(f"{CHECKPOINT_PREFIX}*{CHECKPOINT_SUFFIX}"))
    return found[-1] if found else None


def load_checkpoint(path: str | os.PathLike, config: PairTrainingConfig) -> dict[str, Any]:
    """The checkpoint at ``path`` (a file, or a folder: its latest), checked against
    ``config`` with :func:`check_resumable`."""
    path = Path(path)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise SourceError(
                f"{path} holds no {CHECKPOINT_PREFIX}*{CHECKPOINT_SUFFIX} checkpoint."
            )
        path = found
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SourceError(f"Checkpoint {path} does not exist.") from None
    except Exception as err:  # pickle and zip errors of a corrupt file
        raise SourceError(f"Checkpoint {path} could not be read: {err}") from None
    check_resumable(saved.get("config", {}), config, path)
    return saved


def check_resumable(saved: dict[str, Any], config: PairTrainingConfig, path: Path) -> None:
    """Refuse a checkpoint whose settings ``saved`` differ from ``config`` in anything
    but ``RESUMABLE_CHANGES`` (a setting it predates counts as ``BEFORE_OBJECTIVES`` says)."""
    differing = [
        f.name
        for f in fields(PairTrainingConfig)
        if f.name not in RESUMABLE_CHANGES
        and saved.get(f.name, BEFORE_OBJECTIVES.get(f.name)) != getattr(config, f.name)
    ]
    if differing:
        details = ", ".join(
            f"{n}: {saved.get(n, BEFORE_OBJECTIVES.get(n))!r} -> {getattr(config, n)!r}"
            for n in differing
        )
        *others, last = RESUMABLE_CHANGES
        raise InputError(
            f"Checkpoint {path} was trained with other settings ({details}); resume with the "
            f"same settings (only {', '.join(others)} and {last} may change)."
        )


def resume(
    saved: dict[str, Any],
    pair: JSAEPair,
    optimizer: torch.optim.Optimizer,
    trackers: tuple[FiringTracker, FiringTracker],
) -> TrainState:
    """The state ``saved`` (from :func:`load_checkpoint`), loaded into a new run's pair,
    optimizer and trackers."""
    pair.sae_in.load_state_dict(saved["sae_in"])
    pair.sae_out.load_state_dict(saved["sae_out"])
    optimizer.load_state_dict(saved["optimizer"])
    trackers[0].last_fired = saved["last_fired_in"]
    trackers[1].last_fired = saved["last_fired_out"]
    return TrainState(
        pair,
        optimizer,
        trackers,
        saved["variance_in"],
        saved["variance_out"],
        step=saved["step"],
        history=saved["history"],
        averages=TermAverages(saved["running"]),
    )
