"""The order of one token's Jacobian heatmap: its rows (out_features) and columns
(in_features) shuffled, by activation, or clustered by |J|.

The engine lists a token's features most active first, so a heatmap in that order shows
a gradient from the latents' activation sizes that looks like structure. The research
authors shuffle both axes before plotting ("otherwise the ordering is determined by the
size of the SAE latent activations which makes it look as if there's a correlation"), so
the explorer shuffles by default.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import leaves_list, linkage

from jsae.errors import InputError

SHUFFLED = "shuffled"
BY_ACTIVATION = "activation"
CLUSTERED = "clustered"

HEATMAP_ORDERS = {SHUFFLED: "Shuffled", BY_ACTIVATION: "By activation", CLUSTERED: "Clustered"}
"""The heatmap's orders (the URL's values) and their labels."""

DEFAULT_HEATMAP_ORDER = SHUFFLED

HEATMAP_ORDER_TITLES = {
    SHUFFLED: "random order",
    BY_ACTIVATION: "most active first",
    CLUSTERED: "clustered by |J|",
}
"""How each order is named in the heatmap's axis titles."""

HEATMAP_ORDER_HELP = (
    "Shuffled (the default) puts rows and columns in a random order, fixed per token "
    "position. By activation lists the most active features first, so the picture follows "
    "the size of the latents' activations and can look as if there were a correlation "
    "where there is none; the research authors shuffle before plotting for that reason. "
    "Clustered puts features with similar |J| patterns next to each other."
)


def _cluster_positions(matrix: np.ndarray) -> np.ndarray:
    """Each row's place in the leaf order of an average-linkage clustering of the rows
    (Euclidean, optimal leaf ordering); fewer than two rows keep their order."""
    n = len(matrix)
    if n < 2:
        return np.arange(n)
    leaves = leaves_list(linkage(matrix, method="average", optimal_ordering=True))
    places = np.empty(n, dtype=np.int64)
    places[leaves] = np.arange(n)
    return places


def order_connections(rows: pd.DataFrame, order: str = DEFAULT_HEATMAP_ORDER) -> pd.DataFrame:
    """A token's connections (``token_connections`` rows) with ``in_order`` and
    ``out_order``: each feature's place on the heatmap's column and row axis (0 first).

    ``order``: ``"shuffled"`` (one permutation of the columns, then one of the rows, from a
    generator seeded with the token's position, so a token always looks the same),
    ``"activation"`` (the activation ranks, most active first) or ``"clustered"`` (rows
    and columns each in the leaf order of a hierarchical clustering of |J|; cells missing
    from ``rows`` and non-finite |J| count as 0).
    """
    if order not in HEATMAP_ORDERS:
        raise InputError(
            f"Unknown heatmap order {order!r}; use one of {', '.join(HEATMAP_ORDERS)}."
        )
    out = rows.copy()
    in_rank = out["in_rank"].to_numpy(dtype=np.int64)
    out_rank = out["out_rank"].to_numpy(dtype=np.int64)
    k_in = int(in_rank.max()) + 1 if len(out) else 0
    k_out = int(out_rank.max()) + 1 if len(out) else 0
    if order == BY_ACTIVATION:
        in_places, out_places = np.arange(k_in), np.arange(k_out)
    elif order == SHUFFLED:
        positions = out["position"].unique()
        if len(positions) > 1:
            raise InputError("Shuffling orders one token's connections, not several tokens'.")
        rng = np.random.default_rng(int(positions[0]) if len(positions) else 0)
        in_places, out_places = rng.permutation(k_in), rng.permutation(k_out)
    else:
        magnitude = np.abs(out["jacobian"].to_numpy(dtype=np.float64))
        matrix = np.zeros((k_out, k_in))
        matrix[out_rank, in_rank] = np.where(np.isfinite(magnitude), magnitude, 0.0)
        in_places, out_places = _cluster_positions(matrix.T), _cluster_positions(matrix)
    out["in_order"] = in_places[in_rank]
    out["out_order"] = out_places[out_rank]
    return out
