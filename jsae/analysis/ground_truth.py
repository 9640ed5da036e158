"""How well the tool finds a known computation: its connections against the true edges.

Where the true edges of an MLP are known (the planted source, ``jsae.planted``), each
connection of a per-connection table, a (token, input feature i, output feature j) row, is a
*true edge* when (i, j) is one of them (in the pair's own feature ids). Two rules flag
connections:

* **important**: |J| > ε (``jsae.table.is_important``, the one split);
* **moved**: |diff| > τ (``jsae.analysis.statistics.moved``).

For each rule: ``flagged`` connections, ``true_edges`` (connections that are true edges),
``hits`` (flagged true edges), precision = hits / flagged and recall = hits / true_edges (NaN
when the denominator is 0). Everything is counted over connections: an edge active on ten
tokens counts ten times.

Off the true edges the MLP computes nothing, so a sound pair's off-edge connections move only
when their output feature leaves the top k (``exited``): ``EdgeRecovery`` also gives how many
off-edge connections exited, their share of the off-edge Σ|diff|, and the largest off-edge
|pre_diff|, the continuous part of the movement, which is 0 for a sound pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jsae.analysis.statistics import DEFAULT_TAU, abs_diff, exited_flags, important_flags, moved
from jsae.errors import InputError

RECOVERY_COLUMNS = ("rule", "flagged", "true_edges", "hits", "precision", "recall")
"""The columns of ``EdgeRecovery.table``, one row per rule (``RULES``)."""
RULES = ("important", "moved")


@dataclass(frozen=True)
class EdgeRecovery:
    """The connections against the true edges (see the module docstring).

    Args:
        eps, tau: the rules' thresholds.
        table: ``RECOVERY_COLUMNS``, one row per rule of ``RULES``.
        off_edge: connections that are no true edge.
        off_edge_exits: of them, those whose output feature left the top k.
        off_edge_exit_share: the exits' share of the off-edge Σ|diff| (NaN when nothing
            off the edges moved).
        off_edge_max_pre_diff: the largest |pre_diff| off the edges (NaN without them).
    """

    eps: float
    tau: float
    table: pd.DataFrame
    off_edge: int
    off_edge_exits: int
    off_edge_exit_share: float
    off_edge_max_pre_diff: float

    def row(self, rule: str) -> pd.Series:
        """The ``table`` row of ``rule`` (``"important"`` or ``"moved"``)."""
        return self.table.set_index("rule").loc[rule]

    def sentences(self) -> tuple[str, ...]:
        """The table and the off-edge movement, one plain sentence each."""
        said = []
        tests = (f"|J| > ε = {self.eps:g}", f"|diff| > τ = {self.tau:g}")
        for rule, test in zip(RULES, tests, strict=True):
            r = self.row(rule)
            said.append(
                f"{rule.capitalize()} ({test}) against the true edges: precision "
                f"{_share(r['precision'])}, recall {_share(r['recall'])} ({int(r['hits']):,} "
                f"of {int(r['flagged']):,} flagged connections are true edges; "
                f"{int(r['true_edges']):,} connections are)."
            )
        off = self.off_edge_sentence()
        return tuple(said) + ((off,) if off else ())

    def off_edge_sentence(self) -> str | None:
        """How the off-edge connections moved, in a sentence (None when there are none)."""
        if not self.off_edge:
            return None
        return (
            f"Off the true edges ({self.off_edge:,} connections): {self.off_edge_exits:,} "
            f"exited the top k, carrying {_share(self.off_edge_exit_share)} of their movement; "
            f"the continuous part (|pre_diff|) is at most {self.off_edge_max_pre_diff:.3g}."
        )


def _share(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def edge_flags(table: pd.DataFrame, edges: pd.DataFrame) -> np.ndarray:
    """Per connection: (in_feature, out_feature) is one of ``edges``' rows."""
    for frame, what in ((table, "The connection table"), (edges, "The true edges")):
        if not {"in_feature", "out_feature"} <= set(frame.columns):
            raise InputError(f"{what} needs in_feature and out_feature columns.")
    ins = [f["in_feature"].to_numpy(np.int64) for f in (table, edges)]
    outs = [f["out_feature"].to_numpy(np.int64) for f in (table, edges)]
    width = 1 + max((int(o.max()) for o in outs if len(o)), default=0)
    return np.isin(ins[0] * width + outs[0], ins[1] * width + outs[1])


def edge_recovery(
    table: pd.DataFrame, edges: pd.DataFrame, eps: float, tau: float = DEFAULT_TAU
) -> EdgeRecovery:
    """Precision and recall of ``important`` and ``moved`` against ``edges`` (rows
    ``in_feature``, ``out_feature`` in the table's feature ids), and the off-edge movement."""
    on_edge = edge_flags(table, edges)
    rows = []
    for rule, flagged in zip(RULES, (important_flags(table, eps), moved(table, tau)), strict=True):
        hits = int((flagged & on_edge).sum())
        n_flagged, n_edges = int(flagged.sum()), int(on_edge.sum())
        rows.append(
            (rule, n_flagged, n_edges, hits, _ratio(hits, n_flagged), _ratio(hits, n_edges))
        )
    off = ~on_edge
    exited = exited_flags(table)
    exits = np.zeros(len(table), bool) if exited is None else exited
    mass = abs_diff(table)[off]
    moved_mass = float(mass.sum())
    pre = (
        np.abs(table["pre_diff"].to_numpy(np.float64)[off])
        if "pre_diff" in table.columns
        else np.array([])
    )
    return EdgeRecovery(
        eps=float(eps),
        tau=float(tau),
        table=pd.DataFrame(rows, columns=list(RECOVERY_COLUMNS)),
        off_edge=int(off.sum()),
        off_edge_exits=int((exits & off).sum()),
        off_edge_exit_share=float(mass[exits[off]].sum() / moved_mass) if moved_mass else math.nan,
        off_edge_max_pre_diff=float(pre.max()) if len(pre) else math.nan,
    )
