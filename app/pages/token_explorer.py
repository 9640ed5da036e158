"""Token explorer: one token's Jacobian, its top connections, a dose-response curve, its
connection graph and the feature cards of the selected connection's two ends."""

from __future__ import annotations

import streamlit as st

from app import cache, guard, results, state
from app.cards import connection_cards
from app.clicks import clicked_edge, clicked_row, pick_from_click
from app.downloads import download_button, show_download_errors
from app.graph import graph_section
from jsae import charts, dose, explore

SHAPE_BOX = {"linear": st.success, "jumprelu": st.info, "other": st.warning}


def apply_pending(table) -> bool:
    """Apply a selection that arrived from a link or the misses table, once; True when it
    chose the connection."""
    selection = st.session_state.get(state.SELECTION)
    if not selection or not selection.get("pending"):
        return False
    selection["pending"] = False
    linked = explore.linked_selection(
        table,
        selection.get("position"),
        selection.get("in_feature"),
        selection.get("out_feature"),
    )
    if linked.warning:
        st.warning(linked.warning, icon=":material/link_off:")
    if linked.position is not None:
        st.session_state["tok_position"] = linked.position
    if linked.connection is None:
        return False
    st.session_state["tok_connection"] = linked.connection
    return True


def pick_position(data: explore.RunData) -> int:
    positions = data.positions
    if st.session_state.get("tok_position") not in positions:
        st.session_state["tok_position"] = positions[0]
    label = "Token (subscript: position; BOS is not ablated)"
    chip = lambda p: explore.token_chip(data.strings[p], p)  # noqa: E731
    if len(positions) > explore.MAX_TOKEN_CHIPS:  # a wall of chips helps nobody: slide instead
        position = st.select_slider(
            label, positions, format_func=chip, key="tok_position", persist_state="session"
        )
    else:
        position = st.pills(
            label,
            positions,
            format_func=chip,
            key="tok_position",
            required=True,
            persist_state="session",
        )
    position = int(position if position is not None else positions[0])
    st.caption(f"In context: {explore.token_context(data.strings, position)}")
    return position


def pick_connection(rows, position: int, from_link: bool) -> tuple[int, int]:
    """The connection to sweep: the strongest one of a newly picked token, else the one
    chosen before."""
    jac = explore.connection_options(rows)
    options = list(jac)
    moved = st.session_state.get("_tok_last_position") != position
    st.session_state["_tok_last_position"] = position
    if st.session_state.get("tok_connection") not in jac or (moved and not from_link):
        st.session_state["tok_connection"] = options[0]
    in_feature, out_feature = st.selectbox(
        "Connection (largest |J| first)",
        options,
        format_func=lambda c: f"in_feature {c[0]} → out_feature {c[1]}   (J = {jac[c]:.4g})",
        key="tok_connection",
        persist_state="session",
    )
    return int(in_feature), int(out_feature)


def pick_order() -> str:
    """The heatmap's order (shuffled unless chosen: activation order suggests structure)."""
    if st.session_state.get(state.HEATMAP_ORDER) not in explore.HEATMAP_ORDERS:
        st.session_state[state.HEATMAP_ORDER] = explore.DEFAULT_HEATMAP_ORDER
    order = st.segmented_control(
        "Order of rows and columns",
        list(explore.HEATMAP_ORDERS),
        format_func=explore.HEATMAP_ORDERS.get,
        required=True,
        key=state.HEATMAP_ORDER,
        help=explore.HEATMAP_ORDER_HELP,
        persist_state="session",
    )
    return order if order in explore.HEATMAP_ORDERS else explore.DEFAULT_HEATMAP_ORDER


def dose_section(data: explore.RunData, rows, position: int, in_f: int, out_f: int) -> None:
    key = data.key
    show_download_errors()
    response = guard.guarded(
        "sweeping the input feature", cache.get_dose_response, key, position, in_f, out_f
    )
    if response is None:
        return
    shape = dose.classify_curve(response.curve["in_act"], response.curve["out_act"])
    SHAPE_BOX[shape.label](
        f"**{dose.CURVE_LABELS[shape.label]}**: {shape.description}",
        icon=":material/show_chart:",
    )
    left, right = st.columns([3, 1])
    with left:
        st.altair_chart(
            charts.dose_response_chart(
                response.curve,
                response.actual_in,
                response.actual_out,
                response.jacobian,
                steps=explore.top_k_steps(response.curve, response.actual_in),
            ),
            width="stretch",
        )
    with right:
        row = rows[(rows["in_feature"] == in_f) & (rows["out_feature"] == out_f)].iloc[0]
        st.metric("Actual activation a", explore.format_number(response.actual_in))
        st.metric("out_act at a", explore.format_number(response.actual_out))
        st.metric("J[out, in]", explore.format_number(response.jacobian))
        st.metric(f"Ablation diff ({key.mode})", explore.format_number(float(row["diff"])))
        name = explore.dose_download_name(key, position, in_f, out_f)
        download_button(st, response.curve, "csv", "Download the curve (CSV)", name)
    st.caption(
        f"a′ swept over [0, {response.curve['in_act'].max():.3g}] with the rest of the token "
        "fixed: x(a′) = x + (a′ − a)·W_dec_in[in_feature]; the output SAE re-selects its top "
        "k at every point (0 when the feature drops out), as in the ablation. Dotted: the "
        "output feature's un-gated pre-activation (J is its slope at a); vertical rules: "
        "where it leaves (or re-enters) the top k, walking away from a. The download holds "
        f"the curve's {len(response.curve):,} points: {', '.join(response.curve.columns)}."
    )


def margins_section(rows, out_f: int) -> None:
    """Each active output feature's pre-activation against the best inactive one."""
    margins = guard.guarded("reading the output features' margins", explore.output_margins, rows)
    if margins is None:
        return
    left, right = st.columns([3, 2])
    with left:
        st.altair_chart(charts.margin_chart(margins, selected=out_f), width="stretch")
    with right:
        number = st.column_config.NumberColumn
        st.dataframe(
            margins[["out_feature", "margin", "exits", "out_pre", "runner_up", "connections"]],
            hide_index=True,
            width="stretch",
            column_config={
                "out_feature": number("out", help="out_feature"),
                "margin": number("margin", format="%.3g", help="out_pre − runner-up"),
                "exits": number("exits", help="Of its connections, how many made it exit."),
                "out_pre": number("out_pre", format="%.3g"),
                "runner_up": number("runner-up", format="%.3g"),
                "connections": number("conn.", help="connections"),
            },
        )
    st.caption(
        "The output SAE keeps the k largest pre-activations; the runner-up is the best "
        "inactive one, and a feature's margin (out_pre − runner-up) is how far a "
        "perturbation must push it down, or another feature up, to swap it out. Read from "
        "the run's table (out_pre = out_act when positive, runner-up = out_act − margin); "
        "colour: the share of its connections whose ablation made it exit."
    )


def main() -> None:
    inputs = results.page_run()
    if inputs is None:
        return
    ctx, data, table = inputs
    results.run_caption(data.key, f" · ε = {ctx.eps:g}")
    from_link = apply_pending(table)
    position = pick_position(data)
    rows = guard.guarded(
        "reading the token's connections", explore.token_connections, table, position
    )
    if rows is None:
        return
    edges = cache.true_edges(data.key)
    rows = explore.mark_true_edges(rows, edges)
    in_f, out_f = pick_connection(rows, position, from_link)
    st.session_state[state.SELECTION] = {
        "position": position,
        "in_feature": in_f,
        "out_feature": out_f,
        "pending": False,
    }
    left, right = st.columns([3, 2])
    with left:
        st.subheader(
            f"Jacobian of position {position} ({explore.token_label(data.strings[position])})"
        )
        order = pick_order()
        clicked = st.altair_chart(
            charts.jacobian_heatmap(
                explore.order_connections(rows, order), selected=(in_f, out_f), order=order
            ),
            width="stretch",
            on_select="rerun",
            key="tok_heatmap",
        )
        cell = clicked_edge(clicked, charts.CELL_SELECTION)
        if pick_from_click(position, cell, (in_f, out_f), "_tok_heatmap_seen"):
            st.rerun()  # a cell clicked: its connection, its cards below
        st.caption("Click a cell to select that connection.")
        if edges is not None:
            st.caption(
                "◇ marks the true edges: the source knows which input feature feeds which "
                "output feature (each SAE feature stands for the planted feature its decoder "
                "is closest to)."
            )
    with right:
        st.subheader("Top connections")
        # the key columns first, so a narrow column still shows them; short headers, the
        # full names in their help
        shown = ["diff", "important", "jacobian", "predicted", "in_feature", "out_feature"]
        top = explore.top_connections(rows, n=25)[shown + ["true_edge"] * (edges is not None)]
        number = st.column_config.NumberColumn
        picked = st.dataframe(
            top,
            hide_index=True,
            width="stretch",
            height=420,
            column_config={
                "diff": number("diff", format="%.3g", help="out_act after − before"),
                "important": st.column_config.CheckboxColumn("important", help="|J| > ε"),
                "jacobian": number("J", format="%.3g", help="jacobian: J[out, in]"),
                "predicted": number("−s·J", format="%.3g", help="predicted: −s·J"),
                "in_feature": number("in", help="in_feature"),
                "out_feature": number("out", help="out_feature"),
                "true_edge": st.column_config.CheckboxColumn("true", help="a true edge"),
            },
            on_select="rerun",
            selection_mode="single-row",
            key="tok_top",
        )
        if pick_from_click(position, clicked_row(picked, top), (in_f, out_f), "_tok_top_seen"):
            st.rerun()  # a row picked: its connection, its cards below
    st.subheader("How far is each output feature from leaving the top k?")
    margins_section(rows, out_f)
    st.subheader(f"Dose-response: in_feature {in_f} → out_feature {out_f}")
    dose_section(data, rows, position, in_f, out_f)
    graph_section(data, rows, ctx.eps, position, (in_f, out_f))
    connection_cards(data.key, in_f, out_f)


main()
