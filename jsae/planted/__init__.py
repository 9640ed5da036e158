"""The planted ground truth: a model whose MLP computes a known sparse graph, built from a seed.

Nothing is trained or shipped: ``graph`` draws the planted features, edges and tokens;
``model`` builds the one-layer ``HookedTransformer`` whose MLP computes them; ``pairs`` the
TopK pairs that are right (``true``) or wrong in known ways (``rotated``, ``noisy``,
``small_k``); ``truth`` the true edges in any pair's feature ids. ``planted_parts`` builds all
of it (in well under a second); ``jsae.loading.load_source("planted")`` turns it into a
``Source``.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformer_lens import HookedTransformer

from jsae.pair import JSAEPair
from jsae.planted.graph import PlantedGraph, PlantedSettings, hadamard_basis, planted_graph
from jsae.planted.model import LAYER, ln_gain, planted_model
from jsae.planted.pairs import (
    NOISY_COSINE,
    PLANTED_KINDS,
    SMALL_K_SHARE,
    planted_pairs,
    random_rotation,
    tilted,
    topk_sae,
)
from jsae.planted.truth import EDGE_COLUMNS, FeatureMatch, GroundTruth, match_features

DESCRIPTION = (
    "jsae's planted ground truth: a one-layer model whose MLP computes a known sparse graph "
    "(each output feature from 3 input features), with pairs right and wrong in known ways."
)


@dataclass(frozen=True)
class PlantedParts:
    """What a planted source is made of (``jsae.loading`` makes it a ``Source``)."""

    model: HookedTransformer
    pairs: dict[str, dict[int, JSAEPair]]
    truth: GroundTruth
    info: dict[str, object]


def planted_parts(settings: PlantedSettings | None = None) -> PlantedParts:
    """The planted model, its pairs and its ground truth, from ``settings`` (default: the
    ``planted`` source's)."""
    graph = planted_graph(settings)
    s = graph.settings
    info = {
        "description": DESCRIPTION,
        "planted": {
            "seed": s.seed,
            "d_model": s.d_model,
            "input features": s.n_in,
            "output features": s.n_out,
            "active inputs per token": s.k_in,
            "active outputs per token": s.k_out,
            "parents per output": s.parents,
            "true edges": int((graph.weights != 0).sum()),
        },
    }
    return PlantedParts(planted_model(graph), planted_pairs(graph), GroundTruth(LAYER, graph), info)


__all__ = [
    "DESCRIPTION",
    "EDGE_COLUMNS",
    "LAYER",
    "NOISY_COSINE",
    "PLANTED_KINDS",
    "SMALL_K_SHARE",
    "FeatureMatch",
    "GroundTruth",
    "PlantedGraph",
    "PlantedParts",
    "PlantedSettings",
    "hadamard_basis",
    "ln_gain",
    "match_features",
    "planted_graph",
    "planted_model",
    "planted_pairs",
    "planted_parts",
    "random_rotation",
    "tilted",
    "topk_sae",
]
