"""A token's connection graph and a feature card's histogram, as Altair charts.

``connection_graph_chart`` draws ``ConnectionGraph.segments()`` and ``.nodes``
(``jsae.analysis.graph``): input features on the left, output features on the right, one
rule per edge, its width from |J|, its colour from the measured diff (``DIFF_RAMP``:
diverging through a grey at 0 that reads on both themes), dashed where the output feature
left the top k; the selected connection is drawn in the highlight colour (``HIGHLIGHT``:
black vanished on the dark theme).
Clicking an edge selects it (a point selection named ``EDGE_SELECTION`` on ``in_feature``
and ``out_feature``). ``card_histogram`` draws a card's log-binned activation counts.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from jsae.charts.common import DIFF_INTERPOLATE, DIFF_RAMP, EXIT_LABEL, HIGHLIGHT, INK
from jsae.charts.palette import TEXT, VIOLET

EDGE_SELECTION = "edge"
"""The name of the graph's edge selection (what ``st.altair_chart(on_select=...)`` reports)."""
SELECTED_COLOR = HIGHLIGHT
ROW_HEIGHT = 22


def connection_graph_chart(
    segments: pd.DataFrame,
    nodes: pd.DataFrame,
    *,
    selected: tuple[int, int] | None = None,
    width: int = 520,
) -> alt.LayerChart:
    """The graph (``ConnectionGraph.segments()`` and ``.nodes``); ``selected`` =
    (in_feature, out_feature) is drawn on top in ``HIGHLIGHT``."""
    rows = int(nodes["row"].max()) + 1 if len(nodes) else 1
    height = max(120, ROW_HEIGHT * rows)
    y_scale = alt.Scale(domain=[rows - 0.5, -0.5])
    x_scale = alt.Scale(domain=[-0.35, 1.35])
    edges = segments.assign(
        x_in=0.0,
        x_out=1.0,
        exit=np.where(segments["exited"], EXIT_LABEL, "stayed in the top k"),
        picked=[
            selected == (int(i), int(o))
            for i, o in zip(segments["in_feature"], segments["out_feature"], strict=True)
        ],
    )
    m = float(np.abs(edges["diff"]).max()) if len(edges) else 1.0
    m = m if m > 0 else 1.0
    pick = alt.selection_point(
        name=EDGE_SELECTION, fields=["in_feature", "out_feature"], on="click"
    )
    axis_free = dict(axis=None)
    rules = (
        alt.Chart(edges)
        .mark_rule(opacity=0.8)
        .encode(
            x=alt.X("x_in:Q", scale=x_scale, **axis_free),
            x2="x_out:Q",
            y=alt.Y("in_row:Q", scale=y_scale, **axis_free),
            y2="out_row:Q",
            strokeWidth=alt.StrokeWidth(
                "abs_jacobian:Q", title="|J|", scale=alt.Scale(range=[0.5, 7])
            ),
            color=alt.condition(
                "datum.picked",
                alt.value(SELECTED_COLOR),
                alt.Color(
                    "diff:Q",
                    title="measured diff",
                    scale=alt.Scale(
                        domain=[-m, 0.0, m], range=DIFF_RAMP, interpolate=DIFF_INTERPOLATE
                    ),
                ),
            ),
            strokeDash=alt.StrokeDash(
                "exit:N",
                title=None,
                scale=alt.Scale(domain=["stayed in the top k", EXIT_LABEL], range=[[1, 0], [4, 3]]),
                # a neutral swatch: the legend otherwise borrows the picked edge's colour
                legend=alt.Legend(symbolStrokeColor=INK),
            ),
            tooltip=[
                alt.Tooltip("in_feature:Q", title="in_feature"),
                alt.Tooltip("out_feature:Q", title="out_feature"),
                alt.Tooltip("jacobian:Q", title="J", format=".4g"),
                alt.Tooltip("diff:Q", title="diff", format=".4g"),
                alt.Tooltip("exit:N", title="output feature"),
            ],
        )
        .add_params(pick)
    )
    dots = (
        alt.Chart(nodes)
        .mark_circle(size=90, color=INK)
        .encode(
            x=alt.X("x:Q", scale=x_scale, **axis_free),
            y=alt.Y("row:Q", scale=y_scale, **axis_free),
            tooltip=["side:N", "feature:Q", alt.Tooltip("activation:Q", format=".4g"), "label:N"],
        )
    )
    left = (
        alt.Chart(nodes[nodes["side"] == "in"])
        .mark_text(align="right", dx=-8, fontSize=11, color=TEXT)
        .encode(x=alt.X("x:Q", scale=x_scale), y=alt.Y("row:Q", scale=y_scale), text="label:N")
    )
    right = (
        alt.Chart(nodes[nodes["side"] == "out"])
        .mark_text(align="left", dx=8, fontSize=11, color=TEXT)
        .encode(x=alt.X("x:Q", scale=x_scale), y=alt.Y("row:Q", scale=y_scale), text="label:N")
    )
    return alt.layer(rules, dots, left, right).properties(
        width=width,
        height=height,
        title="input features → output features (important connections)",
    )


def card_histogram(histogram: pd.DataFrame, *, height: int = 120) -> alt.Chart:
    """A feature card's activation histogram (``FeatureCard.histogram``: ``left``,
    ``right``, ``count``), on a log activation axis; empty bins are left out."""
    data = histogram[histogram["count"] > 0]
    return (
        alt.Chart(data)
        .mark_bar(color=VIOLET)
        .encode(
            x=alt.X("left:Q", title="activation", scale=alt.Scale(type="log")),
            x2="right:Q",
            y=alt.Y("count:Q", title="firings"),
            tooltip=[
                alt.Tooltip("left:Q", format=".3g"),
                alt.Tooltip("right:Q", format=".3g"),
                "count:Q",
            ],
        )
        .properties(height=height)
    )
