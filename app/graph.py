"""The token explorer's connection graph: a |J| threshold, the chart, its honest count, a
click on an edge selecting that connection (``app.clicks``), and the graph as circuit-tracer
JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from app.cards import labeler
from app.clicks import clicked_edge, pick_from_click
from app.guard import guarded
from jsae import charts, explore
from jsae.analysis.graph import connection_graph
from jsae.analysis.graph_export import circuit_tracer_json

THRESHOLD = "tok_graph_threshold"
SEEN = "_tok_graph_seen"
"""The last edge the graph reported as clicked: a click acts once, not on every rerun."""


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
    if pick_from_click(position, clicked_edge(event), current, SEEN):
        st.rerun()
    st.caption(
        "Width: |J|; colour: the measured ablation diff of the output feature (crimson "
        "down, blue up, grey unmoved: a wide grey edge is one the Jacobian calls strong that "
        "did not move); dashed: the output feature left the top k. Click an edge to select "
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
