"""Altair chart builders for the explorer: pure functions, small DataFrame in, chart out.

Every builder takes data that is already binned or aggregated (``jsae.explore``), so a
million connections chart as instantly as a hundred: the browser only ever receives the
bins. Tested through ``chart.to_dict()``.
"""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from jsae.explore.order import BY_ACTIVATION, HEATMAP_ORDER_TITLES, HEATMAP_ORDERS

EXPERIMENT_ORDER = ["important", "unimportant"]
EXPERIMENT_COLORS = ["#e8590c", "#1c7ed6"]
KIND_ORDER = ["jsae", "plain"]
KIND_COLORS = ["#7048e8", "#868e96"]
DIFF_TITLE = "diff = out_act after − before"
DOSE_SERIES = ("measured (top-k re-selected)", "first order: out_act + J·(a′ − a)")


def _y_scale(log: bool, values: pd.Series | None = None) -> alt.Scale:
    """Linear from 0, or log starting half the smallest value down (so bars of the
    smallest count still have a height)."""
    if not log:
        return alt.Scale(type="linear", zero=True)
    positive = values[values > 0] if values is not None else pd.Series(dtype=float)
    if positive.empty:
        return alt.Scale(type="log")
    return alt.Scale(type="log", domainMin=float(positive.min()) / 2)


def _binned_bars(
    bins: pd.DataFrame,
    *,
    group: str,
    order: list[str],
    colors: list[str],
    x_title: str,
    log_count: bool,
    y: str,
    height: int,
    value_range: tuple[float, float] | None = None,
    opacity: float = 0.85,
) -> alt.Chart:
    """Bars from precomputed bins, one colour per group, on a fixed x domain.

    Groups are dodged: in every bin, group g of n draws over the g-th n-th of the bin's
    width (``bar_start`` to ``bar_end``), so no group hides another.
    """
    if y not in ("count", "share"):
        raise ValueError(f"y must be 'count' or 'share', got {y!r}")
    lo, hi = value_range or bins.attrs.get(
        "range", (float(bins["bin_start"].min()), float(bins["bin_end"].max()))
    )
    y_title = "connections" if y == "count" else "share of the group"
    if log_count:
        y_title += " (log)"
    present = [name for name in order if name in set(bins[group])] if len(bins) else order
    slot = bins[group].map({name: i for i, name in enumerate(present)}).fillna(0).to_numpy()
    width = (bins["bin_end"] - bins["bin_start"]).to_numpy() / max(len(present), 1)
    data = bins.assign(
        bar_start=bins["bin_start"].to_numpy() + slot * width,
        bar_end=bins["bin_start"].to_numpy() + (slot + 1) * width,
    )
    return (
        alt.Chart(data)
        .mark_bar(opacity=opacity, binSpacing=0)
        .encode(
            x=alt.X(
                "bar_start:Q",
                bin="binned",  # pre-binned: vertical bars from the baseline
                scale=alt.Scale(domain=[lo, hi], nice=False),
                title=x_title,
            ),
            x2=alt.X2("bar_end:Q"),
            y=alt.Y(
                f"{y}:Q",
                scale=_y_scale(log_count, bins.get(y)),
                stack=None,
                title=y_title,
                axis=alt.Axis(tickCount=5, gridOpacity=0.5),
            ),
            color=alt.Color(
                f"{group}:N",
                scale=alt.Scale(domain=order, range=colors),
                legend=alt.Legend(title=None, orient="top"),
            ),
            tooltip=[
                alt.Tooltip(f"{group}:N"),
                alt.Tooltip("bin_start:Q", format=".4g", title="from"),
                alt.Tooltip("bin_end:Q", format=".4g", title="to"),
                alt.Tooltip("count:Q", format=","),
                alt.Tooltip("share:Q", format=".2%"),
            ],
        )
        .properties(height=height, width="container")
    )


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
    return _binned_bars(
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
        _binned_bars(
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
    bars = _binned_bars(
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


def _diagonal(lo: float, hi: float) -> alt.Chart:
    line = pd.DataFrame({"predicted": [lo, hi], "diff": [lo, hi]})
    return (
        alt.Chart(line)
        .mark_line(color="#212529", strokeDash=[5, 4], strokeWidth=1.5)
        .encode(x="predicted:Q", y="diff:Q")
    )


def _square_axes(lo: float, hi: float) -> tuple[alt.Scale, alt.Scale]:
    return alt.Scale(domain=[lo, hi], nice=False), alt.Scale(domain=[lo, hi], nice=False)


def effect_density(grid: pd.DataFrame, *, height: int = 420) -> alt.LayerChart:
    """Predicted change (−s·J) against the measured diff as a 2-D density heatmap
    (``explore.density_grid`` output), with the y = x line."""
    lo, hi = grid.attrs.get("range", (0.0, 1.0))
    xs, ys = _square_axes(lo, hi)
    heat = (
        alt.Chart(grid)
        .mark_rect()
        .encode(
            x=alt.X("x_start:Q", bin="binned", scale=xs, title="predicted = −s·J"),
            x2="x_end:Q",
            y=alt.Y("y_start:Q", bin="binned", scale=ys, title=DIFF_TITLE),
            y2="y_end:Q",
            color=alt.Color(
                "count:Q",
                scale=alt.Scale(type="log", scheme="viridis"),
                legend=alt.Legend(title="connections"),
            ),
            tooltip=[
                alt.Tooltip("x_start:Q", format=".3g", title="predicted from"),
                alt.Tooltip("y_start:Q", format=".3g", title="diff from"),
                alt.Tooltip("count:Q", format=","),
            ],
        )
    )
    return alt.layer(heat, _diagonal(lo, hi)).properties(height=height, width="container")


def effect_scatter(
    points: pd.DataFrame, value_range: tuple[float, float], *, height: int = 420
) -> alt.LayerChart:
    """Predicted change against measured diff, one dot per connection (for few points),
    coloured by experiment, with the y = x line."""
    lo, hi = value_range
    xs, ys = _square_axes(lo, hi)
    data = points.assign(
        experiment=np.where(points["important"].to_numpy(dtype=bool), "important", "unimportant"),
        token=points["token"].astype(str),
    )[
        [
            "position",
            "token",
            "in_feature",
            "out_feature",
            "jacobian",
            "predicted",
            "diff",
            "experiment",
        ]
    ]
    dots = (
        alt.Chart(data)
        .mark_circle(size=28, opacity=0.7)
        .encode(
            x=alt.X("predicted:Q", scale=xs, title="predicted = −s·J"),
            y=alt.Y("diff:Q", scale=ys, title=DIFF_TITLE),
            color=alt.Color(
                "experiment:N",
                scale=alt.Scale(domain=EXPERIMENT_ORDER, range=EXPERIMENT_COLORS),
                legend=alt.Legend(title=None, orient="top"),
            ),
            tooltip=[
                "position:Q",
                "token:N",
                "in_feature:Q",
                "out_feature:Q",
                alt.Tooltip("jacobian:Q", format=".4g"),
                alt.Tooltip("predicted:Q", format=".4g"),
                alt.Tooltip("diff:Q", format=".4g"),
            ],
        )
    )
    return alt.layer(dots, _diagonal(lo, hi)).properties(height=height, width="container")


def jacobian_heatmap(
    rows: pd.DataFrame,
    *,
    selected: tuple[int, int] | None = None,
    order: str = BY_ACTIVATION,
    height: int = 420,
) -> alt.LayerChart:
    """One token's k_out × k_in Jacobian (``explore.token_connections`` rows), feature ids
    on the axes, diverging colours centred on 0. ``selected`` = (in_feature, out_feature)
    is outlined.

    The axes are sorted by ``in_order`` / ``out_order`` (``explore.order_connections``)
    and their titles name ``order``; rows without those columns are drawn in activation
    order (``in_rank`` / ``out_rank``, most active first), which only ``order`` =
    ``"activation"`` may claim.
    """
    if order not in HEATMAP_ORDERS:
        raise ValueError(
            f"Unknown heatmap order {order!r}; use one of {', '.join(HEATMAP_ORDERS)}."
        )
    if {"in_order", "out_order"} <= set(rows.columns):
        in_field, out_field = "in_order", "out_order"
    elif order == BY_ACTIVATION:
        in_field, out_field = "in_rank", "out_rank"
    else:
        raise ValueError(
            f"The {order!r} heatmap needs in_order / out_order columns (explore.order_connections)."
        )
    keep = ["in_feature", "out_feature", "in_rank", "out_rank", "in_act", "out_act", "jacobian"]
    keep += ["diff"] + [f for f in (in_field, out_field) if f not in ("in_rank", "out_rank")]
    data = rows[keep].copy()
    m = float(np.abs(data["jacobian"]).max()) if len(data) else 1.0
    m = m if m > 0 else 1.0
    title = HEATMAP_ORDER_TITLES[order]
    x = alt.X(
        "in_feature:O",
        sort=alt.EncodingSortField(field=in_field, order="ascending"),
        title=f"in_feature ({title})",
        axis=alt.Axis(labelAngle=-90, labelOverlap=False, labelFontSize=9),
    )
    y = alt.Y(
        "out_feature:O",
        sort=alt.EncodingSortField(field=out_field, order="ascending"),
        title=f"out_feature ({title})",
        axis=alt.Axis(labelOverlap=False, labelFontSize=9),
    )
    cells = (
        alt.Chart(data)
        .mark_rect()
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "jacobian:Q",
                scale=alt.Scale(scheme="redblue", domain=[-m, m], reverse=True),
                legend=alt.Legend(title="J"),
            ),
            tooltip=[
                "in_feature:O",
                "out_feature:O",
                alt.Tooltip("jacobian:Q", format=".4g"),
                alt.Tooltip("diff:Q", format=".4g"),
                alt.Tooltip("in_act:Q", format=".3g"),
                alt.Tooltip("out_act:Q", format=".3g"),
            ],
        )
    )
    layers = [cells]
    if selected is not None:
        pick = data[(data["in_feature"] == selected[0]) & (data["out_feature"] == selected[1])]
        layers.append(
            alt.Chart(pick).mark_rect(fill=None, stroke="#212529", strokeWidth=2.5).encode(x=x, y=y)
        )
    return alt.layer(*layers).properties(height=height, width="container")


def dose_response_chart(
    curve: pd.DataFrame,
    actual_in: float,
    actual_out: float,
    jacobian: float | None = None,
    *,
    height: int = 320,
) -> alt.LayerChart:
    """The output feature's activation along the input feature's sweep (``in_act`` →
    ``out_act``), the actual point marked, and the Jacobian's tangent there (dashed)."""
    measured = curve[["in_act", "out_act"]].assign(series=DOSE_SERIES[0])
    x = alt.X("in_act:Q", title="in_feature activation a′", scale=alt.Scale(nice=False))
    y = alt.Y("out_act:Q", title="out_feature activation")
    color = alt.Color(
        "series:N",
        scale=alt.Scale(domain=list(DOSE_SERIES), range=["#1c7ed6", "#e8590c"]),
        legend=alt.Legend(title=None, orient="top", labelLimit=400),
    )
    layers = [
        alt.Chart(measured)
        .mark_line(strokeWidth=2)
        .encode(
            x=x,
            y=y,
            color=color,
            tooltip=[alt.Tooltip("in_act:Q", format=".3g"), alt.Tooltip("out_act:Q", format=".4g")],
        )
    ]
    if jacobian is not None and math.isfinite(jacobian):
        top = float(curve["in_act"].max())
        a0, a1 = max(0.0, actual_in - 1.0), min(top, actual_in + 1.0)
        tangent = pd.DataFrame(
            {
                "in_act": [a0, a1],
                "out_act": [
                    actual_out + jacobian * (a0 - actual_in),
                    actual_out + jacobian * (a1 - actual_in),
                ],
                "series": DOSE_SERIES[1],
            }
        )
        layers.append(
            alt.Chart(tangent)
            .mark_line(strokeDash=[6, 4], strokeWidth=2)
            .encode(x=x, y=y, color=color)
        )
    point = pd.DataFrame({"in_act": [actual_in], "out_act": [actual_out], "label": ["actual"]})
    layers.append(
        alt.Chart(point).mark_rule(color="#868e96", strokeDash=[2, 2]).encode(x="in_act:Q")
    )
    layers.append(
        alt.Chart(point)
        .mark_point(size=90, filled=True, color="#212529")
        .encode(
            x="in_act:Q",
            y="out_act:Q",
            tooltip=[
                "label:N",
                alt.Tooltip("in_act:Q", format=".4g", title="a"),
                alt.Tooltip("out_act:Q", format=".4g"),
            ],
        )
    )
    return alt.layer(*layers).properties(height=height, width="container")
