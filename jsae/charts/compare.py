"""JSAE vs plain's chart: log10 |J| histograms per pair kind with ε marked."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from jsae.charts.common import KIND_COLORS, KIND_ORDER, binned_bars


def jacobian_histogram(
    bins: pd.DataFrame,
    eps: float,
    *,
    log_count: bool = False,
    y: str = "share",
    height: int = 300,
) -> alt.LayerChart:
    """log10 |J| histograms per pair kind in one chart (``explore.histogram_bins`` with
    group ``kind``; each bin split between the kinds), with a dashed rule at ε."""
    bars = binned_bars(
        bins,
        group="kind",
        order=KIND_ORDER,
        colors=KIND_COLORS,
        x_title="log₁₀ |J|",
        log_count=log_count,
        y=y,
        height=height,
    )
    rule = (
        alt.Chart(pd.DataFrame({"log_eps": [math.log10(eps)], "label": [f"ε = {eps:g}"]}))
        .mark_rule(color="#212529", strokeDash=[4, 3], strokeWidth=1.5)
        .encode(x="log_eps:Q", tooltip=["label:N"])
    )
    return alt.layer(bars, rule)
