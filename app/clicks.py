"""Reading clicks: the selection a chart or table event holds (a graph's edge, a heatmap's
cell, a table's row), acted on once (a widget reports its selection again on every rerun),
and a clicked connection turned into the token explorer's pending selection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from app.state import SELECTION
from jsae import charts


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
    position: int, edge: tuple[int, int] | None, current: tuple[int, int], seen: str
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
