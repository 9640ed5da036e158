"""Charts you can click into, driven with AppTest: a bar selected on Causal sparsity's diff
histogram, a cell of Jacobian vs effect's density (the exits' cells too) or a region brushed
on its scatter lists its connections (recomputed here by a pandas filter of the run's
table), and a click on a row opens the token explorer on that connection with its query
parameters set by the switch itself."""

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.testing.v1 import AppTest

from jsae import charts, explore
from tests.test_app import (  # noqa: F401  (fixtures)
    APP,
    PAGES,
    TIMEOUT,
    expected_table,
    loaded,
    no_problems,
    run,
    tiny_source,
)


def drill_table(at: AppTest) -> pd.DataFrame | None:
    for frame in at.dataframe:
        if list(frame.value.columns) == list(explore.DRILL_COLUMNS):
            return frame.value
    return None


def test_a_selected_bar_lists_its_connections_and_a_row_opens_the_token_explorer(
    tiny_source,  # noqa: F811
    loaded,  # noqa: F811
    monkeypatch,
):
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, tiny_source)
    at = run(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    no_problems(at)
    assert drill_table(at) is None  # nothing selected, no table
    table = expected_table(loaded)
    bins = explore.diff_bins(table, bins=int(at.select_slider(key="hist_bins").value))
    bar = bins.sort_values("count").iloc[-1]
    point = {k: bar[k] for k in ("experiment", "bin_start", "bin_end")}
    at.session_state["hist_pick"] = {"selection": {charts.BIN_SELECTION: [point]}}
    at.run()
    no_problems(at)
    shown = drill_table(at)
    # The reference: the bar's connections by a pandas filter (the bin's upper edge is
    # closed only for the last bin), largest |diff| first.
    diff = table["diff"].astype(np.float64)
    lo, hi = bins.attrs["range"]
    upper = diff <= bar["bin_end"] if bar["bin_end"] == hi else diff < bar["bin_end"]
    group = table["important"] == (bar["experiment"] == "important")
    want = table[group & (diff >= bar["bin_start"]) & upper]
    assert len(want) == bar["count"]
    want = want.iloc[np.argsort(-np.abs(want["diff"].to_numpy()), kind="stable")]
    want = want[list(explore.DRILL_COLUMNS)].head(explore.DRILL_MAX).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        shown.reset_index(drop=True), want, check_dtype=False, check_categorical=False
    )
    assert any(f"{int(bar['count']):,} connections" in c.value for c in at.caption)
    # A click on a row: the token explorer, on that connection, its link set by the switch
    # itself (one navigation, one history entry), not by a later rewrite of the URL.
    switches = []
    switch_page = st.switch_page

    def recording(page, **kwargs):
        switches.append(dict(kwargs.get("query_params") or {}))
        switch_page(page, **kwargs)

    monkeypatch.setattr(st, "switch_page", recording)
    row = want.iloc[1]
    at.session_state["hist_rows"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    no_problems(at)
    picked = (int(row["in_feature"]), int(row["out_feature"]))
    assert at.button_group(key="tok_position").value == int(row["position"])
    assert at.selectbox(key="tok_connection").value == picked
    assert at.query_params["position"] == str(int(row["position"]))
    assert at.query_params["in_feature"] == str(picked[0])
    assert at.query_params["out_feature"] == str(picked[1])
    (params,) = switches
    assert params == {k: at.query_params[k] for k in at.query_params}


def test_a_selected_density_cell_lists_its_connections(
    tiny_source,  # noqa: F811
    loaded,  # noqa: F811
    monkeypatch,
):
    at = effect_page(tiny_source, monkeypatch, scatter_max=0)  # the density, not the dots
    assert drill_table(at) is None
    table = expected_table(loaded)
    grid = explore.effect_grid(table, int(at.select_slider(key="effect_bins").value))
    cells = grid.groupby(["x_start", "x_end", "y_start", "y_end"], as_index=False)["count"].sum()
    cell = cells.sort_values("count").iloc[-1]
    point = {k: cell[k] for k in ("x_start", "x_end", "y_start", "y_end")}
    at.session_state["effect_pick"] = {"selection": {charts.DENSITY_SELECTION: [point]}}
    at.run()
    no_problems(at)
    # The reference: a pandas filter of predicted and diff on the cell's edges (each
    # axis's last bin closed), largest |diff| first.
    want = table[in_cell(table, grid, cell)]
    assert len(want) == cell["count"]
    assert_lists(at, want)


def effect_page(source: str, monkeypatch, *, scatter_max: int) -> AppTest:
    """Jacobian vs effect after Run on ``source``: the dots when the run has at most
    ``scatter_max`` connections, else the density."""
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, source)
    monkeypatch.setattr("jsae.explore.effect.SCATTER_MAX", scatter_max)
    at = run(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.switch_page(PAGES["effect"]).run()
    no_problems(at)
    return at


def in_cell(table: pd.DataFrame, grid: pd.DataFrame, cell: pd.Series) -> pd.Series:
    """The reference: the connections whose predicted and diff fall in ``cell``'s edges, by
    a pandas filter (each axis's last bin closed, the others half-open)."""
    x_hi, y_hi = grid.attrs["range"][1], grid.attrs["y_range"][1]
    x, y = table["predicted"].astype(np.float64), table["diff"].astype(np.float64)
    x_in = (x >= cell["x_start"]) & ((x <= x_hi) if cell["x_end"] == x_hi else (x < cell["x_end"]))
    y_in = (y >= cell["y_start"]) & ((y <= y_hi) if cell["y_end"] == y_hi else (y < cell["y_end"]))
    return x_in & y_in


def assert_lists(at: AppTest, want: pd.DataFrame) -> None:
    """The page's table beneath the chart is ``want`` in the reference's order and cap."""
    pd.testing.assert_frame_equal(
        drill_table(at).reset_index(drop=True),
        largest_first_head(want),
        check_dtype=False,
        check_categorical=False,
    )


def largest_first_head(want: pd.DataFrame) -> pd.DataFrame:
    """The table's reference order and cap: largest |diff| first, at most DRILL_MAX."""
    want = want.iloc[np.argsort(-np.abs(want["diff"].to_numpy()), kind="stable")]
    return want[list(explore.DRILL_COLUMNS)].head(explore.DRILL_MAX).reset_index(drop=True)


def test_an_exits_cell_of_the_density_lists_only_its_exits(
    tiny_source,  # noqa: F811
    loaded,  # noqa: F811
    monkeypatch,
):
    at = effect_page(tiny_source, monkeypatch, scatter_max=0)  # the density, not the dots
    table = expected_table(loaded)
    grid = explore.effect_grid(table, int(at.select_slider(key="effect_bins").value))
    exits = grid[grid["exited"]]
    assert len(exits), "the tiny source's run has connections that left the top k"
    cell = exits.sort_values("count").iloc[-1]
    point = {k: cell[k] for k in ("x_start", "x_end", "y_start", "y_end", "exited")}
    at.session_state["effect_pick"] = {"selection": {charts.DENSITY_SELECTION: [point]}}
    at.run()
    no_problems(at)
    # The reference: a pandas filter of the exits on the cell's edges (each axis's last bin
    # closed).
    want = table[in_cell(table, grid, cell) & table["exited"]]
    assert len(want) == cell["count"]
    assert_lists(at, want)
    assert any(f"{len(want):,} connections that left the top k" in c.value for c in at.caption)
    # The exits' cells lie on their own band, apart from the others' cells: a box over the
    # whole grid shows that the page keeps the flag (only the exits are listed, not all).
    (x_lo, x_hi), (y_lo, y_hi) = grid.attrs["range"], grid.attrs["y_range"]
    for flag in (True, False):
        point = {"x_start": x_lo, "x_end": x_hi, "y_start": y_lo, "y_end": y_hi, "exited": flag}
        at.session_state["effect_pick"] = {"selection": {charts.DENSITY_SELECTION: [point]}}
        at.run()
        no_problems(at)
        want = table[table["exited"] == flag]
        assert 0 < len(want) < len(table)
        pd.testing.assert_frame_equal(
            drill_table(at).reset_index(drop=True),
            largest_first_head(want),
            check_dtype=False,
            check_categorical=False,
        )


def test_a_region_brushed_on_the_scatter_lists_the_connections_inside_it(
    tiny_source,  # noqa: F811
    loaded,  # noqa: F811
    monkeypatch,
):
    at = effect_page(tiny_source, monkeypatch, scatter_max=10_000)  # the dots
    table = expected_table(loaded)
    assert explore.draws_dots(table)
    assert drill_table(at) is None  # nothing brushed, no table
    x, y = table["predicted"].astype(np.float64), table["diff"].astype(np.float64)
    # A box whose right and lower edges pass exactly through connections (their float32
    # values as the chart's JSON carries them), y written top first as Vega-Lite does.
    x_lo, x_hi = float(x.quantile(0.2)), float(x.sort_values().iloc[int(0.9 * len(x))])
    y_lo, y_hi = float(y.sort_values().iloc[int(0.1 * len(y))]), float(y.quantile(0.95))
    brush = {"predicted": [x_lo, x_hi], "diff": [y_hi, y_lo]}
    at.session_state["effect_brush"] = {"selection": {charts.REGION_SELECTION: brush}}
    at.run()
    no_problems(at)
    want = table[x.between(x_lo, x_hi) & y.between(y_lo, y_hi)]  # pandas: both ends in
    assert (want["predicted"] == x_hi).any() and (want["diff"] == y_lo).any()
    assert_lists(at, want)
    assert any(f"{len(want):,} connections with predicted in [" in c.value for c in at.caption)
