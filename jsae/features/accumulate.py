"""Streaming statistics of one SAE's activations: top-n contexts, log histogram, firings.

Fed batch after batch of firings (feature f, activation a > 0, sequence s, position p), it
keeps per feature the ``n_top`` firings with the largest a, ties broken by the smaller
(s, p): the kept set is a function of the set of firings seen, not of how they were batched,
so a build resumed from a checkpoint gives the cards an uninterrupted one gives. Memory is
O(d_sae · (n_top + bins)), whatever the number of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

from jsae.features.settings import CardSettings


def log_bins(activations: np.ndarray, settings: CardSettings) -> np.ndarray:
    """Each activation's histogram bin: ``jsae.histogram``'s equal-width bins (numpy's edges,
    the last bin closed) of log10(a) over ``settings.log10_range``, with values below or
    above the range in the first or last bin."""
    lo, hi = settings.log10_range
    edges = np.linspace(lo, hi, settings.bins + 1)
    index = np.searchsorted(edges, np.log10(activations.astype(np.float64)), side="right") - 1
    return np.clip(index, 0, settings.bins - 1)


@dataclass
class SideStats:
    """The running statistics of one SAE (one side of a pair).

    Args:
        top_act: ``[d_sae, n_top]`` the largest activations, descending (-inf: none yet).
        top_seq, top_pos: their sequence and position (-1: none yet).
        fires: ``[d_sae]`` firings counted.
        hist: ``[d_sae, bins]`` the firings' log10-activation histogram.
    """

    top_act: Float[np.ndarray, "d_sae n_top"]
    top_seq: Int[np.ndarray, "d_sae n_top"]
    top_pos: Int[np.ndarray, "d_sae n_top"]
    fires: Int[np.ndarray, " d_sae"]
    hist: Int[np.ndarray, "d_sae bins"]

    @classmethod
    def empty(cls, d_sae: int, settings: CardSettings) -> SideStats:
        shape = (d_sae, settings.n_top)
        return cls(
            np.full(shape, -np.inf, dtype=np.float32),
            np.full(shape, -1, dtype=np.int32),
            np.full(shape, -1, dtype=np.int32),
            np.zeros(d_sae, dtype=np.int64),
            np.zeros((d_sae, settings.bins), dtype=np.int64),
        )

    @property
    def d_sae(self) -> int:
        return len(self.fires)

    def update(
        self,
        feature: Int[np.ndarray, " m"],
        act: Float[np.ndarray, " m"],
        seq: Int[np.ndarray, " m"],
        pos: Int[np.ndarray, " m"],
        settings: CardSettings,
    ) -> None:
        """Add a batch of firings (every ``act`` > 0)."""
        d_sae, n_top = self.top_act.shape
        act = act.astype(np.float32)
        self.fires += np.bincount(feature, minlength=d_sae)
        cell = feature.astype(np.int64) * settings.bins + log_bins(act, settings)
        self.hist += np.bincount(cell, minlength=d_sae * settings.bins).reshape(self.hist.shape)
        kept = np.isfinite(self.top_act)
        features = np.concatenate([np.nonzero(kept)[0], feature])
        acts = np.concatenate([self.top_act[kept], act])
        seqs = np.concatenate([self.top_seq[kept], seq.astype(np.int32)])
        poss = np.concatenate([self.top_pos[kept], pos.astype(np.int32)])
        order = np.lexsort((poss, seqs, -acts, features))  # last key sorts first
        features, acts, seqs, poss = features[order], acts[order], seqs[order], poss[order]
        starts = np.searchsorted(features, np.arange(d_sae))
        rank = np.arange(len(features)) - starts[features]
        keep = rank < n_top
        f, r = features[keep], rank[keep]
        self.top_act[f, r] = acts[keep]
        self.top_seq[f, r] = seqs[keep]
        self.top_pos[f, r] = poss[keep]

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The state as named arrays (a checkpoint's)."""
        return {
            f"{prefix}.top_act": self.top_act,
            f"{prefix}.top_seq": self.top_seq,
            f"{prefix}.top_pos": self.top_pos,
            f"{prefix}.fires": self.fires,
            f"{prefix}.hist": self.hist,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> SideStats:
        return cls(*(arrays[f"{prefix}.{name}"].copy() for name in cls.__dataclass_fields__))
