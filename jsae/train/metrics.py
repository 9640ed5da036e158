"""What training measures: variances, explained variance, dead features and running means.

``total_variance(x) = E||x - E[x]||²`` is the FVU's denominator, and explained variance is
``1 - FVU`` of the SAE's reconstruction with the variance of the same tokens. A feature is
*dead* when it has not fired during the last ``window`` tokens.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from sae_lens import TopKSAE
from torch import Tensor

from jsae.pair import topk_encode
from jsae.train.losses import TERMS, decode_topk, fvu

PENALTY = "jacobian_penalty"


def total_variance(x: Float[Tensor, "tokens d"]) -> float:
    """E||x - E[x]||², the denominator of the FVU and of explained variance."""
    return float((x - x.mean(0)).pow(2).sum(-1).mean())


@torch.no_grad()
def explained_variance(sae: TopKSAE, x: Float[Tensor, "tokens d"]) -> float:
    """1 - sum ||x - SAE(x)||² / sum ||x - mean(x)||² over the tokens of ``x`` (1 - FVU)."""
    x = x.float()
    values, indices = topk_encode(sae, x)
    return float(1 - fvu(x - decode_topk(sae, values, indices), total_variance(x)))


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


class TermAverages:
    """Means of the loss terms over the steps since the last history entry.

    The Jacobian penalty is averaged over the steps that computed it (with λ = 0 only the
    logging steps do), every other term over all steps. ``state()`` goes into checkpoints,
    so that a resumed run's next entry averages exactly the steps the uninterrupted one did.
    """

    def __init__(self, state: dict[str, Any] | None = None):
        state = state or {}
        self.sums = dict.fromkeys(TERMS, 0.0)
        self.sums.update(state.get("sums", {}))
        self.steps: int = state.get("n_sum", 0)
        self.penalty_steps: int = state.get("n_penalty", 0)

    def add(self, terms: dict[str, Tensor]) -> None:
        for key, value in terms.items():
            self.sums[key] += value.item()
        self.steps += 1
        self.penalty_steps += PENALTY in terms

    def means(self) -> dict[str, float]:
        means = {key: self.sums[key] / self.steps for key in TERMS if key != PENALTY}
        means[PENALTY] = self.sums[PENALTY] / max(self.penalty_steps, 1)
        return means

    def reset(self) -> None:
        self.sums = dict.fromkeys(self.sums, 0.0)
        self.steps = self.penalty_steps = 0

    def state(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "n_sum": self.steps, "n_penalty": self.penalty_steps}
