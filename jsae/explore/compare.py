"""JSAE vs plain: the same prompt through both pairs of one layer, side by side.

The two kinds are the source's (``PairKinds.compared_for``): a JSAE and a plain pair (or the
randomized-LLM controls) for the paper's sources, the ``true`` and ``rotated`` pairs for the
planted one; the first is the reference. A layer can be compared when the source has both; each pair's
table gives its share of important entries, its ratio and its log10 |J| histogram, binned
on one range with ε on it; its analysis (``jsae.analysis.analyse``) the AUC, the ratio
without exits, the exits' share and the verdict.

One ε splits the two pairs at very different shares of important connections (a JSAE's
Jacobian is much sparser), so the page also compares them across ε (``sweep_view``, from
``jsae.analysis.sweep_frame``) and at a matched fraction (``matched_comparison``: each pair
split at its own ε that makes the JSAE's share at the page's ε important).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jsae.analysis import (
    DEFAULT_TAU,
    EPS_SWEEP_GRID,
    Analysis,
    EffectStatistics,
    Verdict,
    matched_fraction,
    sweep_frame,
)
from jsae.errors import InputError
from jsae.explore.binning import data_range, histogram_bins, log_abs_jacobian
from jsae.pair import PAPER_KINDS, PairKinds
from jsae.stats import Tolerance, importance_ratio, jacobian_sparsity, summarize

COMPARED = PAPER_KINDS.compared[0]
"""The paper's pair kinds the page compares, in its column order (``jsae``, ``plain``)."""
SWEEP_SHOWN = {
    "ratio": "ratio (log)",
    "fraction_important": "fraction |J| > ε",
    "auc_at_eps": "AUC of |J| > ε",
}
"""The ε sweep's statistics the page draws (one chart each, in this order) and their titles."""
LOG_SWEEP = ("ratio",)
"""Sweep statistics drawn on a log y axis (only their positive values)."""


def compared_kinds(kind: str, kinds: PairKinds = PAPER_KINDS) -> tuple[str, str]:
    """The two kinds to compare for a run of ``kind`` among a source's ``kinds``: for the
    paper's, the JSAE and the plain pair of the real model, or the randomized-LLM controls'
    when ``kind`` is one of those."""
    return kinds.compared_for(kind)


@dataclass(frozen=True)
class Gap:
    """Why a layer cannot be compared.

    Args:
        message: the sentence to show.
        switch_to: a layer that has both pairs (None when no layer has).
    """

    message: str
    switch_to: int | None = None


def comparison_gap(
    layers_by_kind: Mapping[str, Sequence[int]], layer: int, kinds: tuple[str, str] = COMPARED
) -> Gap | None:
    """None when ``layer`` has both pairs of ``kinds`` (a JSAE and a plain pair), else why
    not (and which layer has both). ``layers_by_kind`` maps each of the source's kinds to its
    layers."""
    present = [kind for kind in kinds if layers_by_kind.get(kind)]
    if len(present) < 2:
        only = present[0] if present else "no"
        return Gap(
            f"This source has only {only} pairs, so there is nothing to compare. Load a "
            "source with both a JSAE and a plain pair for the same layer (the bundled "
            "default has both for every layer)."
        )
    here = [kind for kind in kinds if layer in layers_by_kind.get(kind, ())]
    if len(here) == 2:
        return None
    both = sorted(set(layers_by_kind[kinds[0]]) & set(layers_by_kind[kinds[1]]))
    hint = (
        f"Layers with both: {', '.join(map(str, both))}."
        if both
        else "No layer of this source has both."
    )
    return Gap(f"Layer {layer} has only a {here[0]} pair. {hint}", both[0] if both else None)


@dataclass(frozen=True)
class PairStats:
    """One pair's numbers on the prompt at ε.

    Args:
        summary: ``stats.summarize`` of its table.
        important_share: the share of active Jacobian entries with |J| > ε.
        ratio: mean |diff| of important over unimportant connections.
        unimportant_mean_abs_diff: mean |diff| of the connections with |J| ≤ ε.
        analysis: ``jsae.analysis.analyse`` of the same table at the same ε.
    """

    summary: pd.DataFrame
    important_share: float
    ratio: float
    unimportant_mean_abs_diff: float
    analysis: Analysis

    @property
    def statistics(self) -> EffectStatistics:
        return self.analysis.statistics

    @property
    def verdict(self) -> Verdict:
        """The analysis' verdict for this pair."""
        return self.analysis.verdict


def pair_stats(
    table: pd.DataFrame, eps: float, analysis: Analysis, tolerance: Tolerance | None = None
) -> PairStats:
    """The numbers of one pair's table split at ε, with its ``analysis`` at that ε; the
    summary's "within tolerance" at ``tolerance`` (``Tolerance()`` when None)."""
    if not math.isclose(analysis.statistics.eps, eps, rel_tol=1e-12):
        raise InputError(
            f"The analysis is at ε = {analysis.statistics.eps:g}, the table at ε = {eps:g}."
        )
    summary = summarize(table, tolerance)
    return PairStats(
        summary,
        jacobian_sparsity(table["jacobian"].to_numpy(), eps),
        importance_ratio(summary),
        float(summary.loc["unimportant", "mean_abs_diff"]),
        analysis,
    )


def sweep_view(
    tables: Mapping[str, pd.DataFrame],
    tau: float = DEFAULT_TAU,
    grid: Sequence[float] = EPS_SWEEP_GRID,
) -> pd.DataFrame:
    """``jsae.analysis.sweep_frame`` (kind, eps, statistic, value) of the ``SWEEP_SHOWN``
    statistics, with what a chart can draw: finite values, and positive ones for
    ``LOG_SWEEP`` statistics."""
    frame = sweep_frame(tables, grid, tau)
    frame = frame[frame["statistic"].isin(list(SWEEP_SHOWN))]
    value = frame["value"].to_numpy(dtype=np.float64)
    drawable = np.isfinite(value) & (~frame["statistic"].isin(LOG_SWEEP).to_numpy() | (value > 0))
    return frame[drawable].reset_index(drop=True)


def matched_comparison(tables: Mapping[str, pd.DataFrame], eps: float) -> pd.DataFrame:
    """``jsae.analysis.matched_fraction`` with the first of ``tables`` (the JSAE, or the
    source's reference kind) as the reference at the page's ε: it is split at ε itself (its
    row's ``eps`` is the largest |J| at or below ε, the same split) and the other pair at
    the ε that makes as large a share of its connections important."""
    reference = next(iter(tables))
    return matched_fraction(tables, fraction=None, reference=reference, reference_eps=eps)


def jacobian_bins(tables: Mapping[str, pd.DataFrame], eps: float, bins: int = 60) -> pd.DataFrame:
    """log10 |J| per pair kind (column ``kind``) on one range that also holds log10 ε."""
    groups = {kind: log_abs_jacobian(t["jacobian"].to_numpy()) for kind, t in tables.items()}
    value_range = data_range(*groups.values(), np.array([math.log10(eps)]))
    return histogram_bins(groups, bins=bins, value_range=value_range, group_name="kind")


def chosen_kinds(
    available: Sequence[str],
    run_kind: str,
    kinds: PairKinds = PAPER_KINDS,
    a: str | None = None,
    b: str | None = None,
) -> tuple[str, str, list[str]]:
    """The two kinds JSAE vs plain sets side by side, A then B, among the kinds with a pair
    at the layer (``available``): ``a`` and ``b`` where given and available, else the
    source's comparison for ``run_kind`` (``compared_kinds``: jsae vs plain for the paper's
    kinds), else the first two available. Also a warning per choice that was unusable."""
    default = compared_kinds(run_kind, kinds)
    if not all(kind in available for kind in default):
        default = (*available, *default)[:2]
    warnings = []
    chosen = []
    for wanted, fallback, name in ((a, default[0], "A"), (b, default[1], "B")):
        if wanted is not None and wanted not in available:
            warnings.append(
                f"Pair {name} = {wanted!r} has no pair at this layer; comparing "
                f"{kinds.label(fallback)} instead."
            )
            wanted = None
        chosen.append(fallback if wanted is None else wanted)
    return chosen[0], chosen[1], warnings
