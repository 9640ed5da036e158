"""Jacobian vs effect's charts: the first-order prediction −s·J against the measured diff,
as a density heatmap (many connections) or one dot per connection (few)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from jsae.charts.common import DIFF_TITLE, EXPERIMENT_COLORS, EXPERIMENT_ORDER


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
