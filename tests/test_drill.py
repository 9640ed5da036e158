"""Drilling into the diff histogram (``jsae.explore.drill``): the data's own range, the exit
band and the connections behind each bar, against pandas filters and numpy's histogram
written out here."""

import numpy as np
import pandas as pd
import pytest

from jsae import explore


@pytest.fixture
def table():
    rng = np.random.default_rng(1)
    n = 3000
    exited = rng.random(n) < 0.08
    out_act = rng.uniform(1.1, 1.6, n)
    diff = np.where(exited, -out_act, rng.normal(0.05, 0.04, n)).astype(np.float32)
    jacobian = rng.normal(0, 0.02, n).astype(np.float32)
    return pd.DataFrame(
        {
            "position": rng.integers(1, 30, n),
            "token": "t",
            "in_feature": rng.integers(0, 64, n),
            "out_feature": rng.integers(0, 64, n),
            "jacobian": jacobian,
            "predicted": (-jacobian).astype(np.float32),
            "diff": diff,
            "exited": exited,
            "important": np.abs(jacobian) > 0.01,
        }
    )


def test_diff_bins_span_the_data_not_a_symmetric_range(table):
    bins = explore.diff_bins(table, bins=50)
    diff = table["diff"].to_numpy(dtype=np.float64)
    assert bins.attrs["range"] == (diff.min(), diff.max())
    assert bins.attrs["range"][1] < -bins.attrs["range"][0] / 2  # not forced symmetric
    exits = diff[table["exited"]]
    assert bins.attrs["exit_band"] == (exits.min(), exits.max())


def test_exit_band_is_none_without_exits(table):
    assert explore.exit_band(table.assign(exited=False)) is None


def test_each_bar_lists_exactly_its_connections(table):
    bins = explore.diff_bins(table, bins=37)
    lo, hi = bins.attrs["range"]
    edges = np.linspace(lo, hi, 38)
    diff = table["diff"].astype(np.float64)
    for bar in bins.itertuples():
        picked = explore.picked_bin(
            [{"experiment": bar.experiment, "bin_start": bar.bin_start, "bin_end": bar.bin_end}],
            (lo, hi),
        )
        rows, total = explore.bin_connections(table, picked, limit=10_000)
        # numpy's own bin index of every value: half-open bins, the last one closed.
        index = np.clip(np.searchsorted(edges, diff, side="right") - 1, 0, len(edges) - 2)
        group = table["important"] == (bar.experiment == "important")
        want = table[group & (edges[index] == bar.bin_start)]
        assert total == len(want) == bar.count
        got = rows.sort_values(["position", "in_feature", "out_feature", "diff"])
        ref = want[list(explore.DRILL_COLUMNS)].sort_values(
            ["position", "in_feature", "out_feature", "diff"]
        )
        pd.testing.assert_frame_equal(got.reset_index(drop=True), ref.reset_index(drop=True))


def test_bin_rows_come_largest_first_and_are_capped(table):
    bins = explore.diff_bins(table, bins=5)
    bar = bins.sort_values("count").iloc[-1]
    picked = explore.picked_bin([bar.to_dict()], bins.attrs["range"])
    assert picked.last  # the tallest bar holds the largest diff: its bin is closed
    rows, total = explore.bin_connections(table, picked, limit=7)
    assert len(rows) == 7 and total == bar["count"]
    everything, _ = explore.bin_connections(table, picked, limit=10_000)
    want = np.sort(np.abs(everything["diff"].to_numpy()))[::-1][:7]
    np.testing.assert_array_equal(np.abs(rows["diff"].to_numpy()), want)


@pytest.mark.parametrize(
    "points",
    [None, [], [{"experiment": "important"}], [{"experiment": "x", "bin_start": 1, "bin_end": 1}]],
)
def test_picked_bin_ignores_unusable_selections(points):
    assert explore.picked_bin(points, (0.0, 1.0)) is None


def test_a_value_on_an_edge_belongs_to_the_bin_it_starts():
    # Edges 0, .25, .5, .75, 1 are exact: each value opens its bin, and 1 closes the last.
    diff = np.array([0.0, 0.25, 0.5, 0.75, 1.0], dtype=np.float32)
    table = pd.DataFrame(
        {
            "position": np.arange(5),
            "in_feature": 0,
            "out_feature": 0,
            "jacobian": np.float32(1.0),
            "predicted": np.float32(-1.0),
            "diff": diff,
            "exited": False,
            "important": True,
        }
    )
    bins = explore.diff_bins(table, bins=4)
    counts, _ = np.histogram(diff, bins=np.linspace(0, 1, 5))
    np.testing.assert_array_equal(bins["count"], counts)
    for bar in bins.itertuples():
        picked = explore.picked_bin([bar._asdict()], bins.attrs["range"])
        rows, total = explore.bin_connections(table, picked)
        assert total == bar.count
        assert rows["diff"].min() == bar.bin_start


def bin_index(values, edges):
    """Each value's bin by numpy's rule (half-open bins, the last one closed): the reference
    the density cells' drill-down is checked against."""
    return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)


def test_each_density_cell_lists_exactly_its_connections(table):
    grid = explore.effect_grid(table, 12)
    x_range, y_range = grid.attrs["range"], grid.attrs["y_range"]
    x_edges, y_edges = np.linspace(*x_range, 13), np.linspace(*y_range, 13)

    ix = bin_index(table["predicted"].astype(np.float64), x_edges)
    iy = bin_index(table["diff"].astype(np.float64), y_edges)
    cells = grid.groupby(["x_start", "x_end", "y_start", "y_end"], as_index=False)["count"].sum()
    assert cells["count"].sum() == len(table)
    for cell in cells.itertuples():
        picked = explore.picked_cell([cell._asdict()], x_range, y_range)
        rows, total = explore.cell_connections(table, picked, limit=10_000)
        want = table[(x_edges[ix] == cell.x_start) & (y_edges[iy] == cell.y_start)]
        assert total == len(want) == cell.count
        keys = ["position", "in_feature", "out_feature", "diff"]
        pd.testing.assert_frame_equal(
            rows.sort_values(keys).reset_index(drop=True),
            want[list(explore.DRILL_COLUMNS)].sort_values(keys).reset_index(drop=True),
        )


def test_picked_cell_ignores_unusable_selections():
    assert explore.picked_cell(None, (0, 1), (0, 1)) is None
    assert explore.picked_cell([{"x_start": 0, "x_end": 1}], (0, 1), (0, 1)) is None
    flat = {"x_start": 0, "x_end": 1, "y_start": 0.5, "y_end": 0.5}
    assert explore.picked_cell([flat], (0, 1), (0, 1)) is None


def test_each_density_cell_of_either_layer_lists_exactly_its_connections(table):
    """A cell drawn for the exits (or for the connections that stayed) lists only those:
    the mark's count is the table's, against numpy's bin index and the ``exited`` flag."""
    grid = explore.effect_grid(table, 9)
    x_range, y_range = grid.attrs["range"], grid.attrs["y_range"]
    x_edges, y_edges = np.linspace(*x_range, 10), np.linspace(*y_range, 10)

    ix = bin_index(table["predicted"].astype(np.float64), x_edges)
    iy = bin_index(table["diff"].astype(np.float64), y_edges)
    assert grid["exited"].any() and (~grid["exited"]).any()
    for cell in grid.itertuples():
        picked = explore.picked_cell([cell._asdict()], x_range, y_range)
        assert picked.exited is bool(cell.exited)
        rows, total = explore.cell_connections(table, picked, limit=10_000)
        want = table[
            (x_edges[ix] == cell.x_start)
            & (y_edges[iy] == cell.y_start)
            & (table["exited"] == cell.exited)
        ]
        assert total == len(want) == cell.count
        assert set(rows["exited"]) == {bool(cell.exited)}
    # a table without the flag: nothing exited, so an exits cell is empty
    exits = grid[grid["exited"]].iloc[0]
    picked = explore.picked_cell([exits.to_dict()], x_range, y_range)
    assert explore.cell_connections(table.drop(columns=["exited"]), picked)[1] == 0


def test_picked_cell_refuses_an_unusable_exit_flag():
    cell = {"x_start": 0, "x_end": 1, "y_start": 0, "y_end": 1}
    assert explore.picked_cell([{**cell, "exited": "yes"}], (0, 1), (0, 1)) is None
    assert explore.picked_cell([{**cell, "exited": None}], (0, 1), (0, 1)).exited is None
    assert explore.picked_cell([{**cell, "exited": np.True_}], (0, 1), (0, 1)).exited is True


def region_reference(table, x, y) -> pd.DataFrame:
    """The connections inside the box by pandas' own inclusive ``between``."""
    inside = table["predicted"].astype(np.float64).between(*x) & table["diff"].astype(
        np.float64
    ).between(*y)
    return table[inside]


def test_a_region_lists_exactly_the_connections_inside_it(table):
    rng = np.random.default_rng(7)
    x, y = table["predicted"].to_numpy(np.float64), table["diff"].to_numpy(np.float64)
    keys = ["position", "in_feature", "out_feature", "diff"]
    for _ in range(20):
        xs, ys = np.sort(rng.choice(x, 2)), np.sort(rng.choice(y, 2))
        # Vega-Lite writes the y extent top first: either order is the same box
        selection = {"predicted": list(xs), "diff": [ys[1], ys[0]]}
        region = explore.picked_region(selection)
        assert (region.y_lo, region.y_hi) == tuple(ys)
        rows, total = explore.region_connections(table, region, limit=10_000)
        want = region_reference(table, xs, ys)
        assert total == len(want)
        pd.testing.assert_frame_equal(
            rows.sort_values(keys).reset_index(drop=True),
            want[list(explore.DRILL_COLUMNS)].sort_values(keys).reset_index(drop=True),
        )


def test_a_point_on_the_regions_edge_is_inside(table):
    """Bounds taken from one connection's own values (float32 read as float64): the box is
    closed, so that connection is listed, however thin the box."""
    row = table.iloc[17]
    px, py = float(row["predicted"]), float(row["diff"])
    for selection in (
        {"predicted": [px, px], "diff": [py, py]},  # a box of one point
        {"predicted": [px - 1, px], "diff": [py, py + 1]},  # the point on the right, bottom
        {"predicted": [px, px + 1], "diff": [py - 1, py]},  # on the left, top
    ):
        rows, total = explore.region_connections(table, explore.picked_region(selection))
        want = region_reference(table, selection["predicted"], sorted(selection["diff"]))
        assert total == len(want) >= 1
        hit = (rows["position"] == row["position"]) & (rows["in_feature"] == row["in_feature"])
        assert (hit & (rows["out_feature"] == row["out_feature"])).any()
    # just past the point: it drops out
    nudged = np.nextafter(px, np.inf)
    rows, _ = explore.region_connections(
        table, explore.picked_region({"predicted": [nudged, px + 1], "diff": [py - 1, py + 1]})
    )
    assert not (
        (rows["position"] == row["position"])
        & (rows["in_feature"] == row["in_feature"])
        & (rows["out_feature"] == row["out_feature"])
        & (rows["predicted"] == row["predicted"])
    ).any()


@pytest.mark.parametrize(
    "selection",
    [
        None,
        {},
        {"predicted": [0, 1]},
        {"predicted": [0, "x"], "diff": [0, 1]},
        {"predicted": [0, np.nan], "diff": [0, 1]},
        {"predicted": [0, 1, 2], "diff": [0, 1]},
        {"predicted": 3, "diff": [0, 1]},
    ],
)
def test_picked_region_ignores_unusable_selections(selection):
    assert explore.picked_region(selection) is None


def test_the_captions_say_what_a_selection_holds():
    bar = explore.PickedBin("unimportant", -1.5, -1.25)
    assert explore.bin_text(bar) == "of the unimportant group with diff in [-1.5, -1.25)"
    last = explore.PickedBin("important", 0.75, 1.0, last=True)
    assert explore.bin_text(last) == "of the important group with diff in [0.75, 1]"
    cell = explore.PickedCell(0.0, 0.5, -1.0, 1.0, x_last=False, y_last=True, exited=True)
    assert explore.cell_text(cell) == (
        "that left the top k with predicted in [0, 0.5) and diff in [-1, 1]"
    )
    plain = explore.PickedCell(0.0, 0.5, -1.0, 1.0)
    assert explore.cell_text(plain) == "with predicted in [0, 0.5) and diff in [-1, 1)"
    region = explore.PickedRegion(0.0, 0.5, -1.0, 1.0)
    assert explore.region_text(region) == "with predicted in [0, 0.5] and diff in [-1, 1]"
