"""The token explorer's charts: one token's Jacobian heatmap (clicking a cell selects its
connection: a point selection named ``CELL_SELECTION`` on ``in_feature`` and
``out_feature``), its output features' margins over the best inactive one, and a
connection's dose-response curve (gated and un-gated, with the steps where the output
feature leaves the top k)."""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from jsae.charts.common import EXIT_COLOR, HIGHLIGHT, INK
from jsae.charts.palette import BLUE, GREEN, ORANGE
from jsae.explore.margins import LEAVES, REENTERS
from jsae.explore.order import BY_ACTIVATION, HEATMAP_ORDER_TITLES, HEATMAP_ORDERS

TRUE_EDGE = "true_edge"
"""The column that marks a connection on a true edge (``explore.mark_true_edges``)."""
TRUE_EDGE_COLOR = HIGHLIGHT
CELL_SELECTION = "cell"
"""The name of the heatmap's cell selection (what ``st.altair_chart(on_select=...)`` reports)."""
DOSE_SERIES = ("measured (top-k re-selected)", "first order: out_act + J·(a′ − a)")
DOSE_PRE = "un-gated pre-activation (no top k)"


def jacobian_heatmap(
    rows: pd.DataFrame,
    *,
    selected: tuple[int, int] | None = None,
    order: str = BY_ACTIVATION,
    height: int = 420,
) -> alt.LayerChart:
    """One token's k_out × k_in Jacobian (``explore.token_connections`` rows), feature ids
    on the axes, diverging colours centred on 0. ``selected`` = (in_feature, out_feature)
    is outlined; with a ``true_edge`` column (``explore.mark_true_edges``) the true edges
    carry a hollow diamond.

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
    keep += [TRUE_EDGE] if TRUE_EDGE in rows.columns else []
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
        .add_params(
            alt.selection_point(
                name=CELL_SELECTION, fields=["in_feature", "out_feature"], on="click"
            )
        )
    )
    layers = [cells]
    if TRUE_EDGE in data.columns:
        layers.append(
            alt.Chart(data[data[TRUE_EDGE].to_numpy(dtype=bool)])
            .mark_point(shape="diamond", filled=False, color=TRUE_EDGE_COLOR, size=60)
            .encode(
                x=x,
                y=y,
                tooltip=["in_feature:O", "out_feature:O", alt.Tooltip("jacobian:Q", format=".4g")],
            )
        )
    if selected is not None:
        pick = data[(data["in_feature"] == selected[0]) & (data["out_feature"] == selected[1])]
        layers.append(
            alt.Chart(pick).mark_rect(fill=None, stroke=HIGHLIGHT, strokeWidth=2.5).encode(x=x, y=y)
        )
    return alt.layer(*layers).properties(height=height, width="container")


def dose_response_chart(
    curve: pd.DataFrame,
    actual_in: float,
    actual_out: float,
    jacobian: float | None = None,
    steps: pd.DataFrame | None = None,
    *,
    height: int = 320,
) -> alt.LayerChart:
    """The output feature's activation along the input feature's sweep (``in_act`` →
    ``out_act``), the actual point marked, and the Jacobian's tangent there (dashed).

    With a ``pre`` column the un-gated pre-activation is drawn too (dotted: the line J is
    the slope of, before top-k re-selection and the ReLU); ``steps``
    (``explore.top_k_steps``) are drawn as vertical rules where the output feature leaves
    (or re-enters) the top k. Layers, in order: measured, un-gated, tangent, steps, the
    actual activation's rule, the actual point (each only when there is something to draw).
    """
    x = alt.X("in_act:Q", title="in_feature activation a′", scale=alt.Scale(nice=False))
    y = alt.Y("out_act:Q", title="out_feature activation")
    has_pre = "pre" in curve
    has_tangent = jacobian is not None and math.isfinite(jacobian)
    events = [] if steps is None or steps.empty else list(dict.fromkeys(steps["event"]))
    domain = [DOSE_SERIES[0]] + [DOSE_PRE] * has_pre + [DOSE_SERIES[1]] * has_tangent + events
    palette = {DOSE_SERIES[0]: BLUE, DOSE_PRE: INK, DOSE_SERIES[1]: ORANGE}
    palette |= {LEAVES: EXIT_COLOR, REENTERS: GREEN}
    color = alt.Color(
        "series:N",
        scale=alt.Scale(domain=domain, range=[palette.get(s, INK) for s in domain]),
        legend=alt.Legend(title=None, orient="top", labelLimit=400, columns=2),  # no overflow
    )
    measured = curve[["in_act", "out_act"]].assign(series=DOSE_SERIES[0])
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
    if has_pre:
        pre = curve[["in_act"]].assign(out_act=curve["pre"].to_numpy(), series=DOSE_PRE)
        layers.append(
            alt.Chart(pre)
            .mark_line(strokeWidth=1.5, strokeDash=[2, 2])
            .encode(
                x=x,
                y=y,
                color=color,
                tooltip=[
                    alt.Tooltip("in_act:Q", format=".3g"),
                    alt.Tooltip("out_act:Q", format=".4g", title="pre-activation"),
                ],
            )
        )
    if has_tangent:
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
    if events:
        marks = steps[["in_act", "from_act", "to_act", "event"]].rename(columns={"event": "series"})
        layers.append(
            alt.Chart(marks)
            .mark_rule(strokeWidth=2)
            .encode(
                x="in_act:Q",
                color=color,
                tooltip=[
                    alt.Tooltip("series:N", title="out_feature"),
                    alt.Tooltip("from_act:Q", format=".3g", title="between a′"),
                    alt.Tooltip("to_act:Q", format=".3g", title="and a′"),
                ],
            )
        )
    point = pd.DataFrame({"in_act": [actual_in], "out_act": [actual_out], "label": ["actual"]})
    layers.append(alt.Chart(point).mark_rule(color=INK, strokeDash=[2, 2]).encode(x="in_act:Q"))
    layers.append(
        alt.Chart(point)
        .mark_point(size=90, filled=True, color=INK)
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


def margin_chart(
    margins: pd.DataFrame, selected: int | None = None, *, bar_height: int = 16
) -> alt.LayerChart:
    """One bar per active output feature from the token's runner-up (the best inactive
    pre-activation, a dashed rule) to its own pre-activation: the bar's length is its
    margin. Colour: the share of its connections that made it exit; ``selected`` (an
    out_feature) is outlined. Without a finite runner-up the bars run from 0 to the margin.

    Args:
        margins: ``explore.output_margins`` output, in the order to draw (top first).
    """
    data = margins.copy()
    finite = np.isfinite(data["runner_up"].to_numpy(dtype=np.float64)).all() and len(data)
    if finite:
        data["bar_start"], data["bar_end"] = data["runner_up"], data["out_pre"]
        title = "output-SAE pre-activation (bar: runner-up → out_pre = margin)"
    else:
        data["bar_start"], data["bar_end"] = 0.0, data["margin"]
        title = "margin over the best inactive feature"
    data = data.replace([np.inf, -np.inf], np.nan)
    data["selected"] = data["out_feature"] == selected
    y = alt.Y(
        "out_feature:O",
        sort=data["out_feature"].tolist(),
        title="out_feature (smallest margin first)",
        axis=alt.Axis(labelFontSize=9, labelOverlap=False),
    )
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("bar_start:Q", title=title, scale=alt.Scale(zero=False)),
            x2="bar_end:Q",
            y=y,
            color=alt.Color(
                "p_exit:Q",
                scale=alt.Scale(domain=[0, 1], range=[INK, EXIT_COLOR]),
                legend=alt.Legend(title="P(exit)", format="%"),
            ),
            stroke=alt.condition("datum.selected", alt.value(HIGHLIGHT), alt.value(None)),
            strokeWidth=alt.value(2),
            tooltip=[
                "out_feature:O",
                alt.Tooltip("out_pre:Q", format=".4g"),
                alt.Tooltip("runner_up:Q", format=".4g", title="runner-up"),
                alt.Tooltip("margin:Q", format=".4g"),
                alt.Tooltip("exits:Q", title="exits"),
                alt.Tooltip("connections:Q"),
            ],
        )
    )
    layers = [bars]
    if finite:
        rule = pd.DataFrame({"runner_up": [float(data["runner_up"].iloc[0])]})
        rule["label"] = "runner-up: best inactive pre-activation"
        layers.append(
            alt.Chart(rule)
            .mark_rule(color=INK, strokeDash=[4, 3], strokeWidth=1.5)
            .encode(x="runner_up:Q", tooltip=["label:N", alt.Tooltip("runner_up:Q", format=".4g")])
        )
    height = max(80, bar_height * len(data))
    return alt.layer(*layers).properties(height=height, width="container")
