"""JSAE vs plain: the same prompt through both pairs of one layer, side by side.

A layer can be compared when the source has a JSAE and a plain pair there; each pair's
table gives its share of important entries, its ratio and verdict, and its log10 |J|
histogram, binned on one range with ε on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jsae.explore.binning import data_range, histogram_bins, log_abs_jacobian
from jsae.explore.verdicts import Verdict, verdict
from jsae.pair import RANDOMIZED, is_randomized
from jsae.stats import importance_ratio, jacobian_sparsity, summarize

COMPARED = ("jsae", "plain")
"""The pair kinds the page compares, in its column order."""


def compared_kinds(kind: str) -> tuple[str, str]:
    """The JSAE and the plain pair to compare for a run of ``kind``: the real model's, or
    the randomized-LLM controls' when ``kind`` is one of those."""
    suffix = RANDOMIZED if is_randomized(kind) else ""
    return (COMPARED[0] + suffix, COMPARED[1] + suffix)


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
        verdict: the page's one-line answer for this pair.
    """

    summary: pd.DataFrame
    important_share: float
    ratio: float
    unimportant_mean_abs_diff: float
    verdict: Verdict


def pair_stats(table: pd.DataFrame, eps: float) -> PairStats:
    """The numbers of one pair's table split at ε."""
    summary = summarize(table)
    return PairStats(
        summary,
        jacobian_sparsity(table["jacobian"].to_numpy(), eps),
        importance_ratio(summary),
        float(summary.loc["unimportant", "mean_abs_diff"]),
        verdict(summary, eps),
    )


def jacobian_bins(tables: Mapping[str, pd.DataFrame], eps: float, bins: int = 60) -> pd.DataFrame:
    """log10 |J| per pair kind (column ``kind``) on one range that also holds log10 ε."""
    groups = {kind: log_abs_jacobian(t["jacobian"].to_numpy()) for kind, t in tables.items()}
    value_range = data_range(*groups.values(), np.array([math.log10(eps)]))
    return histogram_bins(groups, bins=bins, value_range=value_range, group_name="kind")
