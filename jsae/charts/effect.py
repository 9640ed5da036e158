"""Jacobian vs effect's charts: the first-order prediction −s·J against the measured diff,
as a density heatmap (many connections) or one dot per connection (few). Connections whose
output feature left the top k (``exited``) are drawn in their own colour: they form the
band diff = −out_act that no derivative sees.

Both charts can be drilled into: a click on a density cell (``DENSITY_SELECTION``) or a box
brushed on the scatter (``REGION_SELECTION``) is what ``explore.picked_cell`` /
``explore.picked_region`` read."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from jsae.charts.common import (
    DENSITY_SELECTION,
    DIFF_TITLE,
    EXIT_COLOR,
    EXIT_LABEL,
    EXPERIMENT_COLORS,
    EXPERIMENT_ORDER,
    HIGHLIGHT,
    INK,
    REGION_SELECTION,
)
from jsae.table import exited_flags

POINT_ORDER = [*EXPERIMENT_ORDER, EXIT_LABEL]
POINT_COLORS = [*EXPERIMENT_COLORS, EXIT_COLOR]
"""The scatter's colours: important, unimportant, and exited connections (of either)."""


def _diagonal(lo: float, hi: float) -> alt.Chart:
    line = pd.DataFrame({"predicted": [lo, hi], "diff": [lo, hi]})
    return (
        alt.Chart(line)
        .mark_line(color=INK, strokeDash=[5, 4], strokeWidth=1.5)
        .encode(x="predicted:Q", y="diff:Q")
    )


def _square_axes(lo: float, hi: float) -> tuple[alt.Scale, alt.Scale]:
    return alt.Scale(domain=[lo, hi], nice=False), alt.Scale(domain=[lo, hi], nice=False)


def _visible_diagonal(
    x_range: tuple[float, float], y_range: tuple[float, float]
) -> alt.Chart | None:
    """The y = x line over the part of it inside both axes' ranges (None when it misses
    the plot)."""
    lo, hi = max(x_range[0], y_range[0]), min(x_range[1], y_range[1])
    return _diagonal(lo, hi) if lo < hi else None


def _cells(data: pd.DataFrame, xs: alt.Scale, ys: alt.Scale, color, picked, **extra) -> alt.Chart:
    """Rectangles on the cells' binned edges; the cell ``picked`` selects is outlined in
    ``HIGHLIGHT`` (nothing is outlined while nothing is selected)."""
    return (
        alt.Chart(data)
        .mark_rect(strokeWidth=2)
        .encode(
            stroke=alt.condition(picked, alt.value(HIGHLIGHT), alt.value(None), empty=False),
            x=alt.X("x_start:Q", bin="binned", scale=xs, title="predicted = −s·J"),
            x2="x_end:Q",
            y=alt.Y("y_start:Q", bin="binned", scale=ys, title=DIFF_TITLE),
            y2="y_end:Q",
            color=color,
            tooltip=[
                alt.Tooltip("x_start:Q", format=".3g", title="predicted from"),
                alt.Tooltip("y_start:Q", format=".3g", title="diff from"),
                alt.Tooltip("count:Q", format=","),
            ],
            **extra,
        )
    )


def effect_density(grid: pd.DataFrame, *, height: int = 420) -> alt.LayerChart:
    """Predicted change (−s·J) against the measured diff as a 2-D density heatmap
    (``explore.density_grid`` or ``explore.effect_grid`` output), each axis on its own range
    (``attrs["range"]`` for x, ``attrs["y_range"]`` for y), with the part of the y = x line
    inside both. A click selects a cell (``DENSITY_SELECTION`` on its four edges and its
    ``exited`` flag).

    Cells of ``exited`` connections (``explore.effect_grid``) are drawn over the others in
    the exits' colour, their opacity growing with the count, with their own legend entry;
    the first layer is always the cells of the connections that stayed in the top k. The
    selection is declared once, on that first layer: a point selection listens to clicks on
    every mark of its layered view (Vega-Lite scopes its events to the view, not the layer),
    so a click on an exits cell selects that cell with ``exited`` true; declaring it on both
    layers would record one click twice."""
    x_range = grid.attrs.get("range", (0.0, 1.0))
    y_range = grid.attrs.get("y_range", x_range)
    xs = alt.Scale(domain=list(x_range), nice=False)
    ys = alt.Scale(domain=list(y_range), nice=False)
    picked = alt.selection_point(
        name=DENSITY_SELECTION,
        fields=["x_start", "x_end", "y_start", "y_end", "exited"],
        on="click",
    )
    exited = exited_flags(grid)
    grid = grid.assign(exited=exited)
    stayed = grid[~exited]
    heat = _cells(
        stayed,
        xs,
        ys,
        alt.Color(
            "count:Q",
            scale=alt.Scale(type="log", scheme="viridis"),
            legend=alt.Legend(title="connections"),
        ),
        picked,
    ).add_params(picked)
    diagonal = _visible_diagonal(x_range, y_range)
    line = [diagonal] if diagonal is not None else []
    if not exited.any():
        return alt.layer(heat, *line).properties(height=height, width="container")
    exits = _cells(
        grid[exited].assign(group=EXIT_LABEL),
        xs,
        ys,
        alt.Color(
            "group:N",
            scale=alt.Scale(domain=[EXIT_LABEL], range=[EXIT_COLOR]),
            legend=alt.Legend(title=None, orient="top"),
        ),
        picked,
        opacity=alt.Opacity("count:Q", scale=alt.Scale(type="log", range=[0.35, 1]), legend=None),
    )
    return (
        alt.layer(heat, exits, *line)
        .resolve_scale(color="independent", opacity="independent")
        .properties(height=height, width="container")
    )


def effect_scatter(
    points: pd.DataFrame, value_range: tuple[float, float], *, height: int = 420
) -> alt.LayerChart:
    """Predicted change against measured diff, one dot per connection (for few points),
    coloured by experiment, connections that left the top k (``exited``, when the table
    has it) in the exits' colour whatever their experiment; with the y = x line. Dragging
    brushes a box (``REGION_SELECTION``, an interval on predicted and diff); the dots
    outside it fade."""
    lo, hi = value_range
    xs, ys = _square_axes(lo, hi)
    experiment = np.where(
        points["important"].to_numpy(dtype=bool), "important", "unimportant"
    ).astype(object)
    exited = exited_flags(points)
    data = points.assign(
        experiment=experiment,
        group=np.where(exited, EXIT_LABEL, experiment),
        exited=exited,
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
            "exited",
            "group",
        ]
    ]
    region = alt.selection_interval(name=REGION_SELECTION, encodings=["x", "y"])
    dots = (
        alt.Chart(data)
        .mark_circle(size=28)
        .encode(
            x=alt.X("predicted:Q", scale=xs, title="predicted = −s·J"),
            y=alt.Y("diff:Q", scale=ys, title=DIFF_TITLE),
            color=alt.Color(
                "group:N",
                scale=alt.Scale(domain=POINT_ORDER, range=POINT_COLORS),
                legend=alt.Legend(title=None, orient="top", labelLimit=300),
            ),
            tooltip=[
                "position:Q",
                "token:N",
                "in_feature:Q",
                "out_feature:Q",
                "experiment:N",
                "exited:N",
                alt.Tooltip("jacobian:Q", format=".4g"),
                alt.Tooltip("predicted:Q", format=".4g"),
                alt.Tooltip("diff:Q", format=".4g"),
            ],
            opacity=alt.when(region).then(alt.value(0.7)).otherwise(alt.value(0.15)),
        )
        .add_params(region)
    )
    return alt.layer(dots, _diagonal(lo, hi)).properties(height=height, width="container")
