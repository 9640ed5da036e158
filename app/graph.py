"""The token explorer's connection graph: a |J| threshold, the chart, its honest count, a
click on an edge selecting that connection, and the graph as circuit-tracer JSON; and the
click readers the other pickers share (a heatmap cell, a table row)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.cards import labeler
from app.guard import guarded
from app.state import SELECTION
from jsae import charts, explore
from jsae.analysis.graph import connection_graph
from jsae.analysis.graph_export import circuit_tracer_json

THRESHOLD = "tok_graph_threshold"
SEEN = "_tok_graph_seen"
"""The last edge the graph reported as clicked: a click acts once, not on every rerun."""


def selection_of(event: Any) -> Mapping:
    """A widget event's ``selection`` (Streamlit's events are dicts with attribute access;
    a value set through the session state is a plain dict)."""
    if isinstance(event, Mapping):
        return event.get("selection") or {}
    return getattr(event, "selection", None) or {}


def clicked_edge(event: Any, name: str = charts.EDGE_SELECTION) -> tuple[int, int] | None:
    """The (in_feature, out_feature) a chart selection event holds under the selection
    ``name`` (the graph's edge, the heatmap's cell), if any."""
    selection = selection_of(event)
    points = selection.get(name) or []
    if not points:
        return None
    point = points[0]
    try:
        return int(point["in_feature"]), int(point["out_feature"])
    except (KeyError, TypeError, ValueError):
        return None


def clicked_row(event: Any, table: pd.DataFrame) -> tuple[int, int] | None:
    """The (in_feature, out_feature) of the row a dataframe selection event holds, if any."""
    selection = selection_of(event)
    picked = selection.get("rows") or []
    if not picked or not 0 <= picked[0] < len(table):
        return None
    row = table.iloc[picked[0]]
    return int(row["in_feature"]), int(row["out_feature"])


def fresh_row(event: Any, seen: str) -> int | None:
    """The row a dataframe selection event holds when it differs from the one seen last
    (kept under ``seen``): a widget reports its selection again on every rerun, and a
    click must act once, so that a picker beside the table stays free to move."""
    selection = selection_of(event)
    picked = (selection.get("rows") or [None])[0]
    if picked == st.session_state.get(seen):
        return None
    st.session_state[seen] = picked
    return picked


def pick_from_click(
    position: int, edge: tuple[int, int] | None, current: tuple[int, int], seen: str = SEEN
) -> bool:
    """Turn a new click on a connection (a graph's edge, a table's row) into the token
    explorer's pending selection; True when the page must rerun to show it. ``seen`` keeps
    the last click of that widget, which it reports again on every rerun."""
    if edge is None or edge == st.session_state.get(seen):
        return False
    st.session_state[seen] = edge
    if edge == current:
        return False
    st.session_state[SELECTION] = {
        "position": position,
        "in_feature": edge[0],
        "out_feature": edge[1],
        "pending": True,
    }
    return True


def graph_section(
    data: explore.RunData, rows: pd.DataFrame, eps: float, position: int, current: tuple[int, int]
) -> None:
    st.subheader(f"Connection graph of position {position}")
    top = float(np.abs(rows["jacobian"]).max()) if len(rows) else 0.0
    threshold = st.slider(
        "Hide edges with |J| below",
        min_value=0.0,
        max_value=max(top, eps),
        value=min(st.session_state.get(THRESHOLD, 0.0), max(top, eps)),
        format="%.3g",
        key=THRESHOLD,
        help="Only important connections (|J| > ε) are drawn; this hides the weaker ones too.",
    )
    graph = guarded(
        "building the connection graph",
        connection_graph,
        rows,
        eps,
        float(threshold),
        labeler(data.key),
    )
    if graph is None:
        return
    st.caption(graph.summary())
    if graph.shown == 0:
        st.info("No edge reaches the threshold: lower it, or ε.", icon=":material/filter_alt:")
        return
    event = st.altair_chart(
        charts.connection_graph_chart(graph.segments(), graph.nodes, selected=current),
        width="stretch",
        on_select="rerun",
        key="tok_graph",
    )
    if pick_from_click(position, clicked_edge(event), current):
        st.rerun()
    st.caption(
        "Width: |J|; colour: the measured ablation diff of the output feature (red "
        "down, blue up); dashed: the output feature left the top k. Click an edge to select "
        "that connection."
    )
    key = data.key
    exported = circuit_tracer_json(
        graph, layer=key.layer, kind=key.kind, source=key.source, prompt_tokens=data.strings
    )
    st.download_button(
        "Download the graph (circuit-tracer JSON)",
        json.dumps(exported, indent=1),
        file_name=f"jsae_graph_{key.kind}_layer{key.layer}_pos{position}.json",
        mime="application/json",
        key="tok_graph_json",
    )
