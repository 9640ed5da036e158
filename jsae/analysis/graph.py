"""One token's connection graph: its active input features on the left, its active output
features on the right, an edge for every important connection (|J| > ε, ``jsae.table``'s
rule) whose |J| also reaches the user's ``threshold``.

Each edge carries J (width: |J|), the measured ablation effect ``diff`` (colour) and
``exited`` (the output feature left the top k when the input was perturbed). Nodes are the
features with at least one edge shown, ordered top to bottom by activation; ``label``
comes from the feature cards when there are any. The counts say what was left out: of the
token's ``total`` connections, ``important`` are important and ``shown`` are drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jsae.errors import InputError
from jsae.table import check_eps, exited_flags, is_important

NEEDED = ("position", "in_feature", "out_feature", "in_act", "out_act", "jacobian", "diff")
EDGE_COLUMNS = (
    "source",
    "target",
    "in_feature",
    "out_feature",
    "jacobian",
    "abs_jacobian",
    "diff",
    "exited",
)
NODE_COLUMNS = ("node_id", "side", "feature", "activation", "row", "x", "label")

Labeler = Callable[[str, int], str]
"""A node's label from its side (``"in"``/``"out"``) and feature id."""


def node_id(side: str, feature: int) -> str:
    """A node's id: ``in_12``, ``out_7``."""
    return f"{side}_{int(feature)}"


@dataclass(frozen=True)
class ConnectionGraph:
    """A token's important connections as nodes and edges.

    Args:
        position: the token's position; eps, threshold: the split and the extra |J| cut.
        nodes: ``NODE_COLUMNS``: ``x`` 0 for inputs, 1 for outputs; ``row`` the rank by
            activation on its side (0 on top).
        edges: ``EDGE_COLUMNS``, largest |J| first.
        total: the token's connections; important: those with |J| > ε.
    """

    position: int
    eps: float
    threshold: float
    nodes: pd.DataFrame
    edges: pd.DataFrame
    total: int
    important: int

    @property
    def shown(self) -> int:
        return len(self.edges)

    def segments(self) -> pd.DataFrame:
        """The edges with their ends' rows (``in_row``, ``out_row``): what a chart draws."""
        rows = self.nodes.set_index("node_id")["row"]
        return self.edges.assign(
            in_row=self.edges["source"].map(rows).to_numpy(dtype=np.int64),
            out_row=self.edges["target"].map(rows).to_numpy(dtype=np.int64),
        )

    def summary(self) -> str:
        """The honest count, in words."""
        cut = f" and |J| ≥ {self.threshold:g}" if self.threshold > 0 else ""
        exits = int(self.edges["exited"].sum()) if self.shown else 0
        return (
            f"{self.shown} edges shown (|J| > ε = {self.eps:g}{cut}) of {self.important} "
            f"important connections and {self.total} in all at position {self.position}; "
            f"{exits} of the shown made the output feature leave the top k."
        )


def connection_graph(
    rows: pd.DataFrame, eps: float, threshold: float = 0.0, labels: Labeler | None = None
) -> ConnectionGraph:
    """The graph of one token's connections ``rows`` (a run's table at one position)."""
    eps = check_eps(eps)
    if not np.isfinite(threshold) or threshold < 0:
        raise InputError(f"The graph's |J| threshold must be ≥ 0, got {threshold!r}.")
    missing = [c for c in NEEDED if c not in rows.columns]
    if missing:
        raise InputError(f"A token's connections need the columns {', '.join(missing)}.")
    positions = rows["position"].unique()
    if len(positions) != 1:
        raise InputError(f"A connection graph is of one token; got positions {list(positions)}.")
    jac = rows["jacobian"].to_numpy(dtype=np.float64)
    important = is_important(jac, eps)
    keep = important & (np.abs(jac) >= threshold)
    kept = rows[keep]
    edges = pd.DataFrame(
        {
            "source": [node_id("in", f) for f in kept["in_feature"]],
            "target": [node_id("out", f) for f in kept["out_feature"]],
            "in_feature": kept["in_feature"].to_numpy(dtype=np.int64),
            "out_feature": kept["out_feature"].to_numpy(dtype=np.int64),
            "jacobian": kept["jacobian"].to_numpy(dtype=np.float64),
            "abs_jacobian": np.abs(kept["jacobian"].to_numpy(dtype=np.float64)),
            "diff": kept["diff"].to_numpy(dtype=np.float64),
            "exited": exited_flags(kept),
        },
        columns=list(EDGE_COLUMNS),
    )
    edges = edges.sort_values("abs_jacobian", ascending=False, kind="stable").reset_index(drop=True)
    nodes = pd.concat(
        [_side_nodes(kept, side, labels) for side in ("in", "out")], ignore_index=True
    )
    return ConnectionGraph(
        int(positions[0]), eps, float(threshold), nodes, edges, len(rows), int(important.sum())
    )


def _side_nodes(kept: pd.DataFrame, side: str, labels: Labeler | None) -> pd.DataFrame:
    acts = (
        kept.groupby(f"{side}_feature", sort=False)[f"{side}_act"]
        .first()
        .sort_values(ascending=False, kind="stable")
    )
    features = acts.index.to_numpy(dtype=np.int64)
    label = labels or (lambda s, f: f"{s} {f}")
    return pd.DataFrame(
        {
            "node_id": [node_id(side, f) for f in features],
            "side": side,
            "feature": features,
            "activation": acts.to_numpy(dtype=np.float64),
            "row": np.arange(len(features), dtype=np.int64),
            "x": 0 if side == "in" else 1,
            "label": [label(side, int(f)) for f in features],
        },
        columns=list(NODE_COLUMNS),
    )
