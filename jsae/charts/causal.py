"""Causal sparsity's charts: the two experiments' diff histograms."""

from __future__ import annotations

import altair as alt
import pandas as pd

from jsae.charts.common import DIFF_TITLE, EXPERIMENT_COLORS, EXPERIMENT_ORDER, binned_bars


def diff_histogram(
    bins: pd.DataFrame,
    *,
    log_count: bool = False,
    y: str = "count",
    height: int = 360,
) -> alt.Chart:
    """The two experiments' diff histograms in one chart on one shared x range (each bin
    split between them, so neither hides the other).

    Args:
        bins: ``explore.histogram_bins`` output (``experiment``, ``bin_start``,
            ``bin_end``, ``count``, ``share``; the shared range in ``attrs["range"]``).
        log_count: log-scaled y axis.
        y: ``"count"`` or ``"share"`` (count over the experiment's size).
    """
    return binned_bars(
        bins,
        group="experiment",
        order=EXPERIMENT_ORDER,
        colors=EXPERIMENT_COLORS,
        x_title=DIFF_TITLE,
        log_count=log_count,
        y=y,
        height=height,
    )


def diff_histogram_panels(
    bins: pd.DataFrame,
    *,
    log_count: bool = False,
    y: str = "count",
    height: int = 240,
) -> list[alt.Chart]:
    """The faceted view: one chart per experiment (important first), each with its own y
    axis, all on the same x range as the overlaid view; the legend names the experiment.
    Separate charts rather than a Vega-Lite facet, so each can stretch to the page's width
    (and no chart title: Streamlit squeezes titled charts)."""
    value_range = bins.attrs.get("range")
    return [
        binned_bars(
            bins[bins["experiment"] == name].reset_index(drop=True),
            group="experiment",
            order=[name],
            colors=[color],
            x_title=DIFF_TITLE,
            log_count=log_count,
            y=y,
            height=height,
            value_range=value_range,
        )
        for name, color in zip(EXPERIMENT_ORDER, EXPERIMENT_COLORS, strict=True)
    ]
