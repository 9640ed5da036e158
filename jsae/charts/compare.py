"""JSAE vs plain's charts: log10 |J| histograms per pair kind with ε marked, and the ε
sweep (one chart per statistic, both pair kinds on each, ε on a log axis and marked).
The pair kinds' mass-capture curves are ``jsae.charts.causal.capture_curves``."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from jsae.charts.common import INK, KIND_ORDER, binned_bars, kind_colors
from jsae.explore.compare import LOG_SWEEP, SWEEP_SHOWN


def jacobian_histogram(
    bins: pd.DataFrame,
    eps: float,
    *,
    log_count: bool = False,
    y: str = "share",
    height: int = 300,
) -> alt.LayerChart:
    """log10 |J| histograms per pair kind in one chart (``explore.histogram_bins`` with
    group ``kind``; each bin split between the kinds), with a dashed rule at ε; kinds
    coloured by ``kind_colors``."""
    order, colors = kind_colors(list(bins["kind"]) if len(bins) else list(KIND_ORDER))
    bars = binned_bars(
        bins,
        group="kind",
        order=order,
        colors=colors,
        x_title="log₁₀ |J|",
        log_count=log_count,
        y=y,
        height=height,
    )
    return alt.layer(bars, eps_rule(eps, log10=True))


def eps_rule(eps: float, *, log10: bool = False) -> alt.Chart:
    """A dashed vertical rule at ε (x ``eps``; at log10 ε, x ``log_eps``, with ``log10``),
    its value in the tooltip."""
    field, x = ("log_eps", math.log10(eps)) if log10 else ("eps", float(eps))
    return (
        alt.Chart(pd.DataFrame({field: [x], "label": [f"ε = {eps:g}"]}))
        .mark_rule(color=INK, strokeDash=[4, 3], strokeWidth=1.5)
        .encode(x=f"{field}:Q", tooltip=["label:N"])
    )


def eps_sweep_charts(frame: pd.DataFrame, eps: float, *, height: int = 220) -> list[alt.LayerChart]:
    """The ε sweep: one chart per statistic of ``explore.SWEEP_SHOWN`` (in its order), each
    with one line per pair kind against ε on a log x axis (log y for ``LOG_SWEEP``), and a
    dashed rule at the page's ε. Separate charts rather than a facet, so each stretches to
    its column (the statistic is the y axis' title: Streamlit squeezes titled charts).

    Args:
        frame: ``explore.sweep_view`` output (kind, eps, statistic, value; drawable values).
        eps: the page's ε.
    """
    domain, colors = kind_colors(list(frame["kind"]))
    epsilons = [*frame["eps"].tolist(), float(eps)]
    x_domain = [min(epsilons), max(epsilons)]
    charts = []
    for statistic, title in SWEEP_SHOWN.items():
        data = frame[frame["statistic"] == statistic][["kind", "eps", "value"]]
        log_y = statistic in LOG_SWEEP
        lines = (
            alt.Chart(data)
            .mark_line(point=alt.OverlayMarkDef(size=14))
            .encode(
                x=alt.X(
                    "eps:Q",
                    scale=alt.Scale(type="log", domain=x_domain, nice=False),
                    axis=alt.Axis(format="~g", tickCount=5),
                    title="ε (log)",
                ),
                y=alt.Y(
                    "value:Q",
                    scale=alt.Scale(type="log") if log_y else alt.Scale(zero=False),
                    axis=alt.Axis(tickCount=5, gridOpacity=0.5),
                    title=title,
                ),
                color=alt.Color(
                    "kind:N",
                    scale=alt.Scale(domain=domain, range=colors),
                    legend=alt.Legend(title=None, orient="bottom", symbolType="stroke"),
                ),
                tooltip=[
                    alt.Tooltip("kind:N", title="pair"),
                    alt.Tooltip("eps:Q", format=".3g", title="ε"),
                    alt.Tooltip("value:Q", format=".4g", title=title),
                ],
            )
        )
        charts.append(alt.layer(lines, eps_rule(eps)).properties(height=height, width="container"))
    return charts
