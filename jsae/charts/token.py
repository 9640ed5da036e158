"""The token explorer's charts: one token's Jacobian heatmap and a connection's
dose-response curve."""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from jsae.explore.order import BY_ACTIVATION, HEATMAP_ORDER_TITLES, HEATMAP_ORDERS

DOSE_SERIES = ("measured (top-k re-selected)", "first order: out_act + J·(a′ − a)")


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
