"""Causal sparsity's charts: the two experiments' diff histograms, the split of their
movement into its parts (exits, linear, curvature), and the mass-capture curve (also JSAE
vs plain's, one line per pair kind)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from jsae.charts.common import (
    BIN_SELECTION,
    DIFF_TITLE,
    EXIT_COLOR,
    EXPERIMENT_COLORS,
    EXPERIMENT_ORDER,
    INK,
    PART_COLORS,
    binned_bars,
    kind_colors,
)
from jsae.charts.palette import BROWN
from jsae.explore.statistics import CAPTURE_RANKINGS

LABEL_MIN_SHARE = 0.06
"""Segments of the decomposition bar at least this wide carry their percentage."""
EXIT_BAND_LABEL = "output feature left the top k"
"""The exit band's label: there diff = −out_act, the gate undid the whole activation."""
RANDOM_COLOR = BROWN
"""The diagonal of a random ranking on the mass-capture chart."""


def clickable(bars: alt.Chart, bins: pd.DataFrame) -> alt.Chart | alt.LayerChart:
    """``bars`` with a click selecting one bar (``BIN_SELECTION`` on its experiment and
    edges) and, under them, the exit band of ``bins.attrs["exit_band"]`` when there is one:
    a shaded x range labelled ``EXIT_BAND_LABEL``."""
    picked = alt.selection_point(
        name=BIN_SELECTION, fields=["experiment", "bin_start", "bin_end"], on="click"
    )
    bars = bars.add_params(picked).encode(
        opacity=alt.condition(picked, alt.value(0.85), alt.value(0.35))
    )
    band = bins.attrs.get("exit_band")
    if band is None:
        return bars
    lo, hi = band
    frame = pd.DataFrame(
        {
            "band_start": [lo],
            "band_end": [hi],
            "middle": [(lo + hi) / 2],
            "label": [EXIT_BAND_LABEL],
        }
    )
    base = alt.Chart(frame)
    shade = base.mark_rect(color=EXIT_COLOR, opacity=0.12).encode(
        x="band_start:Q", x2="band_end:Q", tooltip=[alt.Tooltip("label:N", title="band")]
    )
    text = base.mark_text(color=EXIT_COLOR, baseline="top", dy=4, fontSize=11).encode(
        x="middle:Q", y=alt.value(0), text="label:N"
    )
    return alt.layer(shade, bars, text).properties(height=bars.height, width="container")


def diff_histogram(
    bins: pd.DataFrame,
    *,
    log_count: bool = False,
    y: str = "count",
    height: int = 360,
) -> alt.Chart | alt.LayerChart:
    """The two experiments' diff histograms in one chart on one shared x range (each bin
    split between them, so neither hides the other); a click selects a bar
    (``BIN_SELECTION``), and the exit band is shaded and labelled (``clickable``).

    Args:
        bins: ``explore.diff_bins`` output (``experiment``, ``bin_start``, ``bin_end``,
            ``count``, ``share``; the range in ``attrs["range"]``, the exit band in
            ``attrs["exit_band"]``).
        log_count: log-scaled y axis.
        y: ``"count"`` or ``"share"`` (count over the experiment's size).
    """
    bars = binned_bars(
        bins,
        group="experiment",
        order=EXPERIMENT_ORDER,
        colors=EXPERIMENT_COLORS,
        x_title=DIFF_TITLE,
        log_count=log_count,
        y=y,
        height=height,
    )
    return clickable(bars, bins)


def diff_histogram_panels(
    bins: pd.DataFrame,
    *,
    log_count: bool = False,
    y: str = "count",
    height: int = 240,
) -> list[alt.Chart | alt.LayerChart]:
    """The faceted view: one chart per experiment (important first), each with its own y
    axis, all on the same x range as the overlaid view, each clickable (``clickable``);
    the legend names the experiment. Separate charts rather than a Vega-Lite facet, so each
    can stretch to the page's width (and no chart title: Streamlit squeezes titled charts)."""
    value_range = bins.attrs.get("range")
    panels = []
    for name, color in zip(EXPERIMENT_ORDER, EXPERIMENT_COLORS, strict=True):
        part = bins[bins["experiment"] == name].reset_index(drop=True)
        part.attrs = dict(bins.attrs)
        bars = binned_bars(
            part,
            group="experiment",
            order=[name],
            colors=[color],
            x_title=DIFF_TITLE,
            log_count=log_count,
            y=y,
            height=height,
            value_range=value_range,
        )
        panels.append(clickable(bars, part))
    return panels


def decomposition_bars(parts: pd.DataFrame, *, height: int = 130) -> alt.LayerChart:
    """One horizontal bar per experiment (important on top), split into the shares of its
    movement's mass that exits (gate), the linear part and curvature carry
    (``explore.decomposition``); segments of at least ``LABEL_MIN_SHARE`` are labelled.

    Args:
        parts: ``explore.decomposition`` output (``experiment``, ``part``, ``label``,
            ``share``, ``mass``, ``signed_share``, ``connections``); rows with a NaN share
            (a group that did not move) are left out.
    """
    data = parts[np.isfinite(parts["share"].to_numpy(dtype=np.float64))].copy()
    part_order = list(dict.fromkeys(parts["part"]))  # the stacking order, as given
    labels = dict(zip(parts["part"], parts["label"], strict=False))
    data["start"] = data.groupby("experiment", sort=False)["share"].cumsum() - data["share"]
    data["end"] = data["start"] + data["share"]
    data["middle"] = (data["start"] + data["end"]) / 2
    data["text"] = [f"{v:.0%}" if v >= LABEL_MIN_SHARE else "" for v in data["share"]]
    data = data[
        ["experiment", "part", "label", "share", "mass", "signed_share", "connections"]
        + ["start", "end", "middle", "text"]
    ]
    present = [e for e in EXPERIMENT_ORDER if e in set(data["experiment"])]
    y = alt.Y("experiment:N", sort=present, title=None, scale=alt.Scale(domain=present))
    bars = (
        alt.Chart(data)
        .mark_bar(height={"band": 0.7})
        .encode(
            x=alt.X(
                "start:Q",
                scale=alt.Scale(domain=[0, 1], nice=False),
                axis=alt.Axis(format="%", tickCount=5),
                title="share of Σ|linear| + Σ|curvature| + Σ|gate|",
            ),
            x2="end:Q",
            y=y,
            color=alt.Color(
                "label:N",
                scale=alt.Scale(
                    domain=[labels[p] for p in part_order],
                    range=[PART_COLORS.get(p, INK) for p in part_order],
                ),
                # On the right: a legend on top squeezes a short chart's bars to nothing.
                legend=alt.Legend(title=None),
            ),
            tooltip=[
                alt.Tooltip("experiment:N"),
                alt.Tooltip("label:N", title="part"),
                alt.Tooltip("share:Q", format=".1%"),
                alt.Tooltip("mass:Q", format=".4g", title="Σ|part|"),
                alt.Tooltip("signed_share:Q", format=".1%", title="signed share of Σ|diff|"),
                alt.Tooltip("connections:Q", format=","),
            ],
        )
    )
    text = (
        alt.Chart(data)
        .mark_text(color="white", fontWeight="bold")
        .encode(x="middle:Q", y=y, text="text:N")
    )
    return alt.layer(bars, text).properties(height=height, width="container")


def capture_curves(
    frame: pd.DataFrame, *, at: float | None = None, height: int = 300
) -> alt.LayerChart:
    """Mass-capture curves: the share of Σ|diff| carried by the top fraction of connections
    ranked by |J| (solid) and by |diff| itself (dashed, the most any ranking captures), one
    colour per pair kind; the diagonal is a random ranking, and a dashed rule marks ``at``
    (the headline fraction) when given.

    Args:
        frame: ``explore.capture_frame`` output (kind, fraction, ranking, share).
        at: the fraction to mark (``jsae.analysis.CAPTURE_FRACTION`` on the pages).
    """
    data = frame[["kind", "fraction", "ranking", "share"]]
    domain, colors = kind_colors(list(data["kind"]))
    x = alt.X(
        "fraction:Q",
        scale=alt.Scale(domain=[0, 1], nice=False),
        axis=alt.Axis(format="%", tickCount=5),
        title="top fraction of connections (ranked by |J|, or by |diff| for the oracle)",
    )
    y = alt.Y(
        "share:Q",
        scale=alt.Scale(domain=[0, 1], nice=False),
        axis=alt.Axis(format="%", tickCount=5, gridOpacity=0.5),
        title="share of Σ|diff| they carry",
    )
    diagonal = (
        alt.Chart(pd.DataFrame({"fraction": [0.0, 1.0], "share": [0.0, 1.0]}))
        .mark_line(color=RANDOM_COLOR, strokeDash=[2, 3])
        .encode(x=x, y=y, tooltip=[alt.Tooltip("fraction:Q", title="random ranking", format=".0%")])
    )
    lines = (
        alt.Chart(data)
        .mark_line(strokeWidth=2)
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "kind:N",
                scale=alt.Scale(domain=domain, range=colors),
                legend=alt.Legend(title="pair", orient="right"),
            ),
            strokeDash=alt.StrokeDash(
                "ranking:N",
                scale=alt.Scale(domain=list(CAPTURE_RANKINGS), range=[[1, 0], [6, 3]]),
                legend=alt.Legend(title="ranking", orient="right", symbolType="stroke"),
            ),
            detail="ranking:N",
            tooltip=[
                alt.Tooltip("kind:N", title="pair"),
                alt.Tooltip("ranking:N"),
                alt.Tooltip("fraction:Q", format=".0%", title="top fraction"),
                alt.Tooltip("share:Q", format=".1%", title="share of Σ|diff|"),
            ],
        )
    )
    layers = [diagonal, lines]
    if at is not None:
        layers.append(
            alt.Chart(pd.DataFrame({"fraction": [float(at)], "label": [f"top {at:.0%}"]}))
            .mark_rule(color=INK, strokeDash=[4, 3], strokeWidth=1)
            .encode(x="fraction:Q", tooltip=["label:N"])
        )
    return alt.layer(*layers).properties(height=height, width="container")
