"""The ground truth a source carries: one MLP's true edges, in any pair's own feature ids.

A pair's features need not be the planted ones, so each SAE feature stands for the planted
feature its decoder direction is closest to: the largest |cos| between its decoder row and
the planted directions (inputs for the input SAE, outputs for the output SAE). A connection
(s, t) of the pair is a true edge when s stands for input i, t for output j, and i is a parent
of j. For ``true`` (and ``small_k``) every match has cosine 1; for ``noisy`` ``NOISY_COSINE``;
for ``rotated`` a feature mixes many planted ones and its best cosine is low: its "edges" are
only as meaningful as those cosines say (``FeatureMatch.cosine``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Float, Int

from jsae.pair import JSAEPair
from jsae.planted.graph import PlantedGraph

EDGE_COLUMNS = ("in_feature", "out_feature", "weight", "in_cosine", "out_cosine")
"""A pair's true edges: its feature ids, the planted weight, and how well each matched."""


@dataclass(frozen=True)
class FeatureMatch:
    """Each SAE feature's closest planted feature and the |cos| between their directions."""

    index: Int[np.ndarray, " d_sae"]
    cosine: Float[np.ndarray, " d_sae"]


def match_features(
    decoder: Float[np.ndarray, "d_sae d_model"], directions: Float[np.ndarray, "n d_model"]
) -> FeatureMatch:
    """The planted direction each decoder row is closest to, by |cos| (ties: the lowest id)."""
    rows = decoder / np.linalg.norm(decoder, axis=-1, keepdims=True)
    cos = np.abs(rows @ (directions / np.linalg.norm(directions, axis=-1, keepdims=True)).T)
    index = cos.argmax(-1)
    return FeatureMatch(index, cos[np.arange(len(index)), index])


@dataclass(frozen=True)
class GroundTruth:
    """The true computation of block ``layer``'s MLP.

    Args:
        layer: the block.
        graph: its planted features and edges.
    """

    layer: int
    graph: PlantedGraph

    def edges_for(self, pair: JSAEPair) -> pd.DataFrame:
        """The true edges in ``pair``'s feature ids (``EDGE_COLUMNS``; see the module
        docstring), or none when the pair is for another layer."""
        if pair.layer != self.layer:
            return pd.DataFrame({name: [] for name in EDGE_COLUMNS})
        decoder = lambda sae: sae.W_dec.detach().double().numpy(force=True)  # noqa: E731
        m_in = match_features(decoder(pair.sae_in), self.graph.inputs)
        m_out = match_features(decoder(pair.sae_out), self.graph.outputs)
        weights = self.graph.weights[m_in.index][:, m_out.index]
        s, t = np.nonzero(weights)
        return pd.DataFrame(
            {
                "in_feature": s,
                "out_feature": t,
                "weight": weights[s, t],
                "in_cosine": m_in.cosine[s],
                "out_cosine": m_out.cosine[t],
            }
        )
