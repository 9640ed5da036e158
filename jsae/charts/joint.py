"""The joint ablation's charts: the "removed together" histograms of the three sets (the
one-at-a-time histogram's bars: shared numpy bins, dodged in one chart or one panel per
set), the faithfulness curves of one pair (one line per removal order, its score written
in the corner) and both pairs' curves on one chart (|J| order bold, random and oracle thin,
each pair's score in the legend).

One pair's score sits in the bottom-right corner, which its curves leave empty: all orders
start at 0 (nothing removed) and meet at m = k_in (everything removed, the same row).
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from jsae.analysis import ORDERS, SETS
from jsae.analysis.downstream import KEEP_ORDERS
from jsae.charts.common import binned_bars, kind_colors
from jsae.charts.palette import BLUE, GREEN, GREY, ORANGE, TEXT
from jsae.explore.joint import (
    COMPARED_ORDERS,
    COMPARED_VALUES,
    JOINT_VALUES,
    KEEP_LABELS,
    ORDER_LABELS,
)

SET_COLORS = [BLUE, ORANGE, GREY]
"""``SETS``' colours: unimportant and important as the one-at-a-time experiments', random grey."""
ORDER_COLORS = {
    "jacobian": BLUE,
    "reverse": ORANGE,
    "oracle": GREEN,
    "random": GREY,
}
ORDER_DASHES = {"jacobian": [1, 0], "reverse": [1, 0], "oracle": [6, 3], "random": [2, 3]}
"""The references (oracle, random) dashed, the Jacobian's orders solid."""
ORDER_WIDTHS = {"jacobian": 3.0, "reverse": 2.0, "oracle": 1.5, "random": 1.5}
FRACTION_TITLE = "share of j's inputs removed together (m / k_in)"


def set_histogram(
    bins: pd.DataFrame,
    *,
    value: str = "abs_diff",
    log_count: bool = False,
    y: str = "count",
    height: int = 320,
) -> alt.Chart:
    """The three sets' histograms in one chart on one shared x range (each bin split
    between them).

    Args:
        bins: ``explore.joint_bins`` output (``set``, ``bin_start``, ``bin_end``, ``count``,
            ``share``; the range in ``attrs["range"]``).
        value: what was binned (``explore.JOINT_VALUES``), for the axis title.
        log_count, y: as ``diff_histogram``'s.
    """
    return binned_bars(
        bins,
        group="set",
        order=list(SETS),
        colors=SET_COLORS,
        x_title=JOINT_VALUES[value],
        log_count=log_count,
        y=y,
        height=height,
    )


def set_histogram_panels(
    bins: pd.DataFrame,
    *,
    value: str = "abs_diff",
    log_count: bool = False,
    y: str = "count",
    height: int = 200,
) -> list[alt.Chart]:
    """One chart per set (``SETS`` order), each with its own y axis, all on the overlaid
    view's x range (separate charts, as ``diff_histogram_panels``)."""
    return [
        binned_bars(
            bins[bins["set"] == name].reset_index(drop=True),
            group="set",
            order=[name],
            colors=[color],
            x_title=JOINT_VALUES[value],
            log_count=log_count,
            y=y,
            height=height,
            value_range=bins.attrs.get("range"),
        )
        for name, color in zip(SETS, SET_COLORS, strict=True)
    ]


def _axes(y: str) -> tuple[alt.X, alt.Y]:
    x = alt.X(
        "fraction:Q",
        scale=alt.Scale(domain=[0, 1], nice=False),
        axis=alt.Axis(format="%", tickCount=5),
        title=FRACTION_TITLE,
    )
    y_axis = alt.Y(
        f"{y}:Q",
        scale=alt.Scale(zero=True),
        axis=alt.Axis(tickCount=5, gridOpacity=0.5),
        title=COMPARED_VALUES[y],
    )
    return x, y_axis


def _tooltip(y: str, *first: alt.Tooltip) -> list[alt.Tooltip]:
    return [
        *first,
        alt.Tooltip("order_label:N", title="order"),
        alt.Tooltip("m:Q", title="inputs removed (m)"),
        alt.Tooltip("fraction:Q", format=".0%", title="m / k_in"),
        alt.Tooltip(f"{y}:Q", format=".4g", title=COMPARED_VALUES[y]),
        alt.Tooltip("exit_share:Q", format=".1%", title="j left the top k"),
    ]


def _score_mark(text: str, y: str) -> alt.Chart:
    """``text`` in the bottom-right corner (at m / k_in = 1, ``y`` = 0)."""
    return (
        alt.Chart(pd.DataFrame({"fraction": [1.0], y: [0.0], "label": [text]}))
        .mark_text(align="right", baseline="bottom", dx=-4, dy=-4, fontWeight="bold", color=TEXT)
        .encode(x="fraction:Q", y=f"{y}:Q", text="label:N")
    )


def faithfulness_curves(
    curves: pd.DataFrame, score: str, *, y: str = "mean_abs_diff", height: int = 320
) -> alt.LayerChart:
    """One pair's curves: each order's mean (``y``) against m / k_in, one colour per order
    (oracle and random dashed), and ``score`` in the corner.

    Args:
        curves: ``JointStatistics.curves`` (order, m, fraction, mean_abs_diff, mean_share,
            exit_share).
        score: the text to write (``explore.score_label``).
        y: ``mean_abs_diff`` or ``mean_share`` (``explore.CURVE_VALUES``).
    """
    data = curves.assign(order_label=curves["order"].map(ORDER_LABELS))
    data = data[["order", "order_label", "m", "fraction", y, "exit_share"]]
    labels = [ORDER_LABELS[o] for o in ORDERS]
    x, y_axis = _axes(y)
    lines = (
        alt.Chart(data)
        .mark_line(point=alt.OverlayMarkDef(size=16))
        .encode(
            x=x,
            y=y_axis,
            color=alt.Color(
                "order_label:N",
                scale=alt.Scale(domain=labels, range=[ORDER_COLORS[o] for o in ORDERS]),
                legend=alt.Legend(
                    title="removed in order", orient="right", symbolType="stroke", labelLimit=0
                ),
            ),
            strokeDash=alt.StrokeDash(
                "order_label:N",
                scale=alt.Scale(domain=labels, range=[ORDER_DASHES[o] for o in ORDERS]),
                legend=None,
            ),
            tooltip=_tooltip(y),
        )
    )
    return alt.layer(lines, _score_mark(score, y)).properties(height=height, width="container")


def faithfulness_comparison(
    curves: pd.DataFrame, scores: pd.DataFrame, *, y: str = "relative_abs_diff", height: int = 340
) -> alt.LayerChart:
    """Both pairs' curves on one chart: one colour per pair kind, named with its score in
    the legend (the pairs' curves can lie anywhere on the chart, so no corner is free), the
    |J| order bold and solid, random and the oracle thin and dashed.

    Args:
        curves: ``explore.curve_frame`` (kind, ``JointStatistics.curves``' columns and
            ``relative_abs_diff``) with the ``explore.COMPARED_ORDERS``.
        scores: ``explore.score_frame`` (kind, pair: the legend's name, …).
        y: a column of ``explore.COMPARED_VALUES``.
    """
    data = curves[curves["order"].isin(list(COMPARED_ORDERS))]
    pair = dict(zip(scores["kind"], scores["pair"], strict=True))
    data = data.assign(
        order_label=data["order"].map(ORDER_LABELS),
        pair=[pair.get(kind, kind) for kind in data["kind"]],
    )
    data = data[["kind", "pair", "order", "order_label", "m", "fraction", y, "exit_share"]]
    kinds, colors = kind_colors([*scores["kind"], *data["kind"]])
    labels = [ORDER_LABELS[o] for o in COMPARED_ORDERS]
    x, y_axis = _axes(y)
    legend = {
        "orient": "bottom",
        "direction": "vertical",
        "symbolType": "stroke",
        "labelLimit": 0,
        "titleLimit": 0,
    }
    lines = (
        alt.Chart(data)
        .mark_line()
        .encode(
            x=x,
            y=y_axis,
            color=alt.Color(
                "pair:N",
                scale=alt.Scale(domain=[pair.get(k, k) for k in kinds], range=colors),
                legend=alt.Legend(title="pair: faithfulness score [95% interval]", **legend),
            ),
            strokeDash=alt.StrokeDash(
                "order_label:N",
                scale=alt.Scale(domain=labels, range=[ORDER_DASHES[o] for o in COMPARED_ORDERS]),
                legend=alt.Legend(title="removed in order", **legend),
            ),
            strokeWidth=alt.StrokeWidth(
                "order_label:N",
                scale=alt.Scale(domain=labels, range=[ORDER_WIDTHS[o] for o in COMPARED_ORDERS]),
                legend=None,
            ),
            tooltip=_tooltip(y, alt.Tooltip("pair:N")),
        )
    )
    return lines.properties(height=height, width="container")


def downstream_comparison(frame: pd.DataFrame, *, height: int = 320) -> alt.Chart:
    """The pairs' mean next-token KL(clean ‖ patched) against kept connections per token:
    one colour per pair, the |J| order bold and solid, the oracle and random thin and dashed.

    Args:
        frame: ``explore.downstream_frame`` (kind, pair, order, order_label, m_kept,
            kept_connections, kl_mean).
    """
    kinds, colors = kind_colors(list(dict.fromkeys(frame["kind"])))
    pairs = dict(zip(frame["kind"], frame["pair"], strict=False))
    orders = [o for o in KEEP_ORDERS if o in set(frame["order"])]
    labels = [KEEP_LABELS[o] for o in orders]
    legend = {"orient": "bottom", "direction": "vertical", "symbolType": "stroke", "labelLimit": 0}
    return (
        alt.Chart(frame)
        .mark_line(point=True)
        .encode(
            x=alt.X("kept_connections:Q", title="connections kept per token (m · k_out)"),
            y=alt.Y("kl_mean:Q", title="mean KL(clean ‖ patched), next token"),
            color=alt.Color(
                "pair:N",
                scale=alt.Scale(domain=[pairs[k] for k in kinds], range=colors),
                legend=alt.Legend(title="pair", **legend),
            ),
            strokeDash=alt.StrokeDash(
                "order_label:N",
                scale=alt.Scale(domain=labels, range=[ORDER_DASHES[o] for o in orders]),
                legend=alt.Legend(title="each output feature", **legend),
            ),
            strokeWidth=alt.StrokeWidth(
                "order_label:N",
                scale=alt.Scale(domain=labels, range=[ORDER_WIDTHS[o] for o in orders]),
                legend=None,
            ),
            tooltip=[
                alt.Tooltip("pair:N"),
                alt.Tooltip("order_label:N", title="each output feature"),
                alt.Tooltip("m_kept:Q", title="inputs kept per output feature"),
                alt.Tooltip("kept_connections:Q", title="connections kept per token"),
                alt.Tooltip("kl_mean:Q", title="mean KL", format=".4g"),
            ],
        )
        .properties(height=height, width="container")
    )
