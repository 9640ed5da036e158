"""Jacobian vs effect: the first-order prediction −s·J against the measured diff."""

from __future__ import annotations

import streamlit as st

from app import results, state, url
from app.cards import connection_cards
from app.clicks import fresh_row, selection_of
from app.registry import TOKEN_PAGE
from jsae import charts, explore
from jsae.errors import JSAEError
from jsae.stats import Tolerance

EXITS_NOTE = (
    "Crimson: connections whose output feature left the top k (either experiment); they "
    "lie on the band diff = −out_act, which no derivative sees."
)
GROUP_LABELS = {
    "all": "All connections",
    "important": "Important (|J| > ε)",
    "unimportant": "Unimportant (|J| ≤ ε)",
}


def tolerance_inputs() -> Tolerance | None:
    c1, c2, _ = st.columns([1, 1, 2])
    state.display_choices("tol_atol")
    state.display_choices("tol_rtol")
    atol = c1.number_input(
        "Absolute tolerance",
        min_value=0.0,
        step=0.005,
        format="%g",
        key="tol_atol",
        persist_state="session",
        help="A diff is within tolerance when |diff − predicted| ≤ atol + rtol·|predicted|.",
    )
    rtol = c2.number_input(
        "Relative tolerance",
        min_value=0.0,
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
    for col, part in zip(results.metric_row(3), explore.agreement(table, tolerance), strict=True):
        col.metric(
            f"{GROUP_LABELS[part.group]} within tolerance",
            f"{part.share:.1%}" if part.share is not None else "—",
            help=f"{part.within:,} of {part.total:,} connections.",
        )


def effect_chart(table) -> None:
    if explore.draws_dots(table):
        event = st.altair_chart(
            charts.effect_scatter(table, explore.effect_range(table)),
            width="stretch",
            on_select="rerun",
            key="effect_brush",
        )
        st.caption(
            f"{len(table):,} connections, one dot each; dashed: y = x (exact prediction). "
            f"{EXITS_NOTE} Drag a box to list the connections inside it."
        )
        region = explore.picked_region(selection_of(event).get(charts.REGION_SELECTION))
        if region is not None:
            rows, total = explore.region_connections(table, region)
            results.connection_table(rows, total, "effect_rows", explore.region_text(region))
        return
    bins = st.select_slider(
        "Grid", state.display_choices("effect_bins"), key="effect_bins", persist_state="session"
    )
    grid = explore.effect_grid(table, int(bins))
    event = st.altair_chart(
        charts.effect_density(grid), width="stretch", on_select="rerun", key="effect_pick"
    )
    st.caption(
        f"{len(table):,} connections binned in numpy on a {bins}×{bins} grid (log colour "
        "scale), each axis on its own data's range; dashed: y = x (exact prediction). "
        f"{EXITS_NOTE} Click a cell, crimson or not, to list its connections."
    )
    points = selection_of(event).get(charts.DENSITY_SELECTION)
    cell = explore.picked_cell(points, grid.attrs["range"], grid.attrs["y_range"])
    if cell is not None:
        rows, total = explore.cell_connections(table, cell)
        results.connection_table(rows, total, "effect_rows", explore.cell_text(cell))


def misses(ctx: state.Context, key: explore.RunKey, table) -> None:
    st.subheader("Largest misses")
    st.caption(
        "The connections the Jacobian calls unimportant (|J| ≤ ε) that moved most. "
        "Select a row to see its two features' cards below; open one in the token explorer "
        "to see its dose-response curve."
    )
    n = st.select_slider(
        "How many", state.display_choices("miss_n"), key="miss_n", persist_state="session"
    )
    top = explore.largest_misses(table, n=int(n))
    if top.empty:
        st.info("No connection is unimportant at this ε: raise ε.", icon=":material/info:")
        return
    links = explore.miss_links(top, TOKEN_PAGE, explore.to_query_params(url.run_view(ctx)))
    top.insert(0, "open", links)
    number = st.column_config.NumberColumn
    event = st.dataframe(
        top,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="miss_table",
        width="stretch",
        column_config={
            "open": st.column_config.LinkColumn("open", display_text="token explorer ↗"),
            "jacobian": number(format="%.4g"),
            "predicted": number(format="%.4g"),
            "diff": number(format="%.4g"),
            "miss": number("|diff − predicted|", format="%.4g"),
            "in_act": number(format="%.3g"),
            "out_act": number(format="%.3g"),
            "exited": st.column_config.CheckboxColumn(
                "exited", help="The output feature left the top k (diff = −out_act)."
            ),
            "entered": number(
                "entered", help="The strongest feature that entered the top k (−1: none)."
            ),
            "pre_diff": number(format="%.4g"),
            "curvature": number(format="%.4g"),
            "gate": number(format="%.4g"),
            "margin": number(format="%.4g"),
        },
        column_order=explore.miss_display_order(top),
    )
    labels = explore.miss_labels(top)
    row = fresh_row(event, "_miss_table_seen")
    if row is not None and 0 <= row < len(top):
        st.session_state["miss_pick"] = row  # the picker follows a click on the table
    if st.session_state.get("miss_pick") not in range(len(top)):
        st.session_state["miss_pick"] = 0
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    pick = c1.selectbox(
        "Connection", range(len(labels)), format_func=labels.__getitem__, key="miss_pick"
    )
    chosen = top.iloc[int(pick or 0)]
    if c2.button("Open in token explorer", key="miss_open", width="stretch"):
        results.open_token_explorer(chosen["position"], chosen["in_feature"], chosen["out_feature"])
    connection_cards(key, int(chosen["in_feature"]), int(chosen["out_feature"]))


def main() -> None:
    inputs = results.page_run()
    if inputs is None:
        return
    ctx, data, table = inputs
    results.run_caption(data.key, f" · ε = {ctx.eps:g}")
    tolerance = tolerance_inputs()
    if tolerance is not None:
        agreement(table, tolerance)
    effect_chart(table)
    misses(ctx, data.key, table)


main()
