"""What every page's charts share: the experiments', pair kinds', exits' and diff parts'
colours (their roles; the colours themselves are ``jsae.charts.palette``'s), the y scale, and bars drawn from precomputed bins (``jsae.explore.histogram_bins``)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from jsae.charts.palette import BLUE, CRIMSON, GOLD, GREEN, GREY, MAGENTA, ORANGE, TEAL, VIOLET

EXPERIMENT_ORDER = ["important", "unimportant"]
EXPERIMENT_COLORS = [ORANGE, BLUE]
KIND_ORDER = ["jsae", "plain"]
KIND_COLORS = [VIOLET, GREY]
DIFF_TITLE = "diff = out_act after − before"
BIN_SELECTION = "bin"
"""The point selection of a clicked histogram bar (its experiment, bin_start and bin_end)."""
DENSITY_SELECTION = "effect_cell"
"""The point selection of a clicked density cell (its x_start, x_end, y_start, y_end and
whether it counts exited connections)."""
REGION_SELECTION = "effect_region"
"""The interval selection of a region brushed on the effect scatter (predicted and diff)."""
EXIT_LABEL = "exited (left the top k)"
EXIT_COLOR = CRIMSON
"""Connections whose output feature left the top k, on every chart that shows them apart."""
PART_COLORS = {"gate": EXIT_COLOR, "predicted": GREEN, "curvature": GOLD}
"""The parts of diff (``jsae.explore.decomposition.PARTS``): exits share the exits' colour."""


INK = GREY
"""Reference marks (ε rules, the y = x line, the actual-activation dot, capture's oracle
rule): a mid grey with a contrast of at least 3 on the light theme's white and on the dark
theme's near-black alike, so the charts need not know the theme."""
HIGHLIGHT = MAGENTA
"""Outlines of what a heatmap marks (the selected cell, the true edges): apart from its
red–blue scheme, with a contrast of at least 3 on both themes' backgrounds."""
OTHER_KIND_COLOR = TEAL
DIFF_RAMP = [CRIMSON, INK, BLUE]
"""The connection graph's edge colour by measured diff, for -m, 0 and m: negative crimson,
zero the reference grey, positive blue, interpolated in CIELAB (``DIFF_INTERPOLATE``). Every
stop is a mid tone, so L* never leaves them and an edge the Jacobian calls strong but that
did not move (diff ≈ 0) still reads on white: the red–blue scheme's white centre hid it."""
DIFF_INTERPOLATE = "lab"


def kind_colors(kinds: list[str]) -> tuple[list[str], list[str]]:
    """Colour domain and range for pair kinds: ``KIND_ORDER``'s first, in that order, then
    any other kind in order of appearance; ``KIND_COLORS`` by position (so a source's own
    reference kind takes the JSAE's colour and the kind it is compared with the plain
    pair's), any further kind a dark grey."""
    present = set(kinds)
    known = [kind for kind in KIND_ORDER if kind in present]
    domain = known + [kind for kind in dict.fromkeys(kinds) if kind not in KIND_ORDER]
    return domain, [*KIND_COLORS, *[OTHER_KIND_COLOR] * len(domain)][: len(domain)]


def y_scale(log: bool, values: pd.Series | None = None) -> alt.Scale:
    """Linear from 0, or log starting half the smallest value down (so bars of the
    smallest count still have a height)."""
    if not log:
        return alt.Scale(type="linear", zero=True)
    positive = values[values > 0] if values is not None else pd.Series(dtype=float)
    if positive.empty:
        return alt.Scale(type="log")
    return alt.Scale(type="log", domainMin=float(positive.min()) / 2)


def binned_bars(
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
                scale=y_scale(log_count, bins.get(y)),
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
