"""Jacobian vs effect: the first-order prediction −s·J against the measured diff."""

from __future__ import annotations

import streamlit as st

from jsae import charts, explore
from jsae.errors import JSAEError
from jsae.stats import Tolerance, within_tolerance
from pages.shared import ui

SCATTER_MAX = 3000
"""Up to this many connections are drawn as dots; more as a binned density heatmap."""


def tolerance_inputs() -> Tolerance | None:
    c1, c2, _ = st.columns([1, 1, 2])
    default = Tolerance()
    atol = c1.number_input(
        "Absolute tolerance",
        min_value=0.0,
        value=default.atol,
        step=0.005,
        format="%g",
        key="tol_atol",
        persist_state="session",
        help="A diff is within tolerance when |diff − predicted| ≤ atol + rtol·|predicted|.",
    )
    rtol = c2.number_input(
        "Relative tolerance",
        min_value=0.0,
        value=default.rtol,
        step=0.05,
        format="%g",
        key="tol_rtol",
        persist_state="session",
    )
    try:
        return Tolerance(atol=float(atol), rtol=float(rtol))
    except JSAEError as err:
        st.error(f"{err} Type a tolerance ≥ 0.", icon=":material/error:")
        return None


def agreement(table, tolerance: Tolerance) -> None:
    within = within_tolerance(table, tolerance)
    important = table["important"].to_numpy(dtype=bool)
    cols = st.columns(3)
    for col, label, mask in (
        (cols[0], "All connections", slice(None)),
        (cols[1], "Important (|J| > ε)", important),
        (cols[2], "Unimportant (|J| ≤ ε)", ~important),
    ):
        part = within[mask]
        col.metric(
            f"{label} within tolerance",
            f"{part.mean():.1%}" if part.size else "—",
            help=f"{int(part.sum()):,} of {part.size:,} connections.",
        )


def effect_chart(table) -> None:
    predicted = table["predicted"].to_numpy()
    diff = table["diff"].to_numpy()
    value_range = explore.data_range(predicted, diff)
    if len(table) <= SCATTER_MAX:
        st.altair_chart(charts.effect_scatter(table, value_range), width="stretch")
        st.caption(f"{len(table):,} connections, one dot each; dashed: y = x (exact prediction).")
    else:
        bins = st.select_slider(
            "Grid", [40, 60, 80, 120, 160], value=80, key="effect_bins", persist_state="session"
        )
        grid = explore.density_grid(predicted, diff, bins=int(bins), value_range=value_range)
        st.altair_chart(charts.effect_density(grid), width="stretch")
        st.caption(
            f"{len(table):,} connections binned in numpy on a {bins}×{bins} grid (log colour "
            "scale); dashed: y = x (exact prediction)."
        )


def misses(ctx: ui.Context, table) -> None:
    st.subheader("Largest misses")
    st.caption(
        "The connections the Jacobian calls unimportant (|J| ≤ ε) that moved most. "
        "Open one in the token explorer to see its dose-response curve."
    )
    n = st.select_slider(
        "How many", [10, 20, 50, 100], value=20, key="miss_n", persist_state="session"
    )
    top = explore.largest_misses(table, n=int(n))
    if top.empty:
        st.info("No connection is unimportant at this ε: raise ε.", icon=":material/info:")
        return
    base = explore.to_query_params(ui.run_view(ctx))
    top.insert(
        0,
        "open",
        [
            explore.view_link(
                ui.TOKEN_PAGE,
                base,
                position=int(r.position),
                in_feature=int(r.in_feature),
                out_feature=int(r.out_feature),
            )
            for r in top.itertuples()
        ],
    )
    number = st.column_config.NumberColumn
    st.dataframe(
        top,
        hide_index=True,
        width="stretch",
        column_config={
            "open": st.column_config.LinkColumn("open", display_text="token explorer ↗"),
            "jacobian": number(format="%.4g"),
            "predicted": number(format="%.4g"),
            "diff": number(format="%.4g"),
            "miss": number("|diff − predicted|", format="%.4g"),
            "in_act": number(format="%.3g"),
            "out_act": number(format="%.3g"),
        },
    )
    labels = [
        f"#{i + 1}: position {r.position} ({explore.token_label(r.token)}), "
        f"in_feature {r.in_feature} → out_feature {r.out_feature}, diff {r.diff:.3g}"
        for i, r in enumerate(top.itertuples())
    ]
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    pick = c1.selectbox(
        "Connection", range(len(labels)), format_func=labels.__getitem__, key="miss_pick"
    )
    if c2.button("Open in token explorer", key="miss_open", width="stretch"):
        row = top.iloc[int(pick or 0)]
        ui.open_token_explorer(row["position"], row["in_feature"], row["out_feature"])


def main() -> None:
    inputs = ui.page_run()
    if inputs is None:
        return
    ctx, data, table = inputs
    ui.run_caption(data.key, f" · ε = {ctx.eps:g}")
    tolerance = tolerance_inputs()
    if tolerance is not None:
        agreement(table, tolerance)
    effect_chart(table)
    misses(ctx, table)


ui.run_page(main)
