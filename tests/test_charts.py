"""Chart builders, through ``chart.to_dict()``: marks, encodings, data equal to the numpy
bins, shared domains, log scales."""

import math

import numpy as np
import pandas as pd
import pytest

from jsae import charts, explore


def spec_of(chart) -> dict:
    return chart.to_dict()


def values(spec: dict, node: dict | None = None) -> list[dict]:
    """The inline rows a (sub)spec draws (a layer without data of its own draws its
    parent's)."""
    node = node or spec
    return spec["datasets"][node.get("data", spec.get("data"))["name"]]


def layers(spec: dict) -> list[dict]:
    return spec["layer"]


def marks(node: dict) -> str:
    mark = node["mark"]
    return mark["type"] if isinstance(mark, dict) else mark


@pytest.fixture
def diff_bins():
    rng = np.random.default_rng(0)
    groups = {
        "important": rng.normal(0, 1, 4000),
        "unimportant": rng.normal(0, 0.02, 20000),
    }
    return groups, explore.histogram_bins(groups, bins=40)


def test_diff_histogram_overlay(diff_bins):
    groups, bins = diff_bins
    spec = spec_of(charts.diff_histogram(bins))
    assert spec["mark"]["type"] == "bar"
    enc = spec["encoding"]
    assert enc["x"]["field"] == "bar_start" and enc["x2"]["field"] == "bar_end"
    assert enc["x"]["bin"] == "binned"  # vertical bars from the baseline
    assert enc["y"]["field"] == "count" and enc["y"]["scale"]["type"] == "linear"
    assert enc["y"]["stack"] is None  # overlaid, not stacked
    assert enc["color"]["field"] == "experiment"
    assert enc["color"]["scale"]["domain"] == ["important", "unimportant"]
    lo, hi = bins.attrs["range"]
    assert enc["x"]["scale"]["domain"] == [lo, hi]
    # The chart carries exactly the numpy bins, never the raw values.
    rows = pd.DataFrame(values(spec))
    assert len(rows) == len(bins) <= 80
    edges = np.linspace(lo, hi, 41)
    for name, data in groups.items():
        counts, _ = np.histogram(data, bins=edges)
        part = rows[rows["experiment"] == name]
        np.testing.assert_array_equal(part["count"], counts[counts > 0])
        np.testing.assert_allclose(part["bin_start"], edges[:-1][counts > 0])
    # Dodged: important takes the left half of each bin, unimportant the right half.
    half = (rows["bin_end"] - rows["bin_start"]) / 2
    left = rows["experiment"] == "important"
    np.testing.assert_allclose(rows["bar_start"][left], rows["bin_start"][left])
    np.testing.assert_allclose(rows["bar_end"][left], (rows["bin_start"] + half)[left])
    np.testing.assert_allclose(rows["bar_start"][~left], (rows["bin_start"] + half)[~left])
    np.testing.assert_allclose(rows["bar_end"][~left], rows["bin_end"][~left])


def test_diff_histogram_log_scale_and_share(diff_bins):
    _, bins = diff_bins
    spec = spec_of(charts.diff_histogram(bins, log_count=True, y="share"))
    assert spec["encoding"]["y"]["scale"]["type"] == "log"
    assert spec["encoding"]["y"]["scale"]["domainMin"] == pytest.approx(bins["share"].min() / 2)
    assert spec["encoding"]["y"]["field"] == "share"
    assert "(log)" in spec["encoding"]["y"]["title"]
    assert min(row["count"] for row in values(spec)) >= 1  # no zero on a log axis


def test_diff_histogram_panels_share_the_x_range(diff_bins):
    groups, bins = diff_bins
    panels = [spec_of(c) for c in charts.diff_histogram_panels(bins, log_count=True)]
    assert len(panels) == 2
    for spec, name in zip(panels, ["important", "unimportant"], strict=True):
        assert spec["mark"]["type"] == "bar"
        assert spec["encoding"]["x"]["scale"]["domain"] == list(bins.attrs["range"])
        assert spec["encoding"]["y"]["scale"]["type"] == "log"
        assert spec["encoding"]["color"]["scale"]["domain"] == [name]
        rows = values(spec)
        assert {r["experiment"] for r in rows} == {name}
        assert sum(r["count"] for r in rows) == len(groups[name])
        assert all(r["bar_start"] == r["bin_start"] and r["bar_end"] == r["bin_end"] for r in rows)


def test_diff_histogram_rejects_unknown_options(diff_bins):
    _, bins = diff_bins
    with pytest.raises(ValueError):
        charts.diff_histogram(bins, y="density")


def test_effect_density_heatmap_with_diagonal():
    rng = np.random.default_rng(1)
    x = rng.normal(size=10_000)
    y = x + rng.normal(0, 0.1, size=10_000)
    grid = explore.density_grid(x, y, bins=30)
    spec = spec_of(charts.effect_density(grid))
    heat, line = layers(spec)
    assert heat["mark"]["type"] == "rect"
    enc = heat["encoding"]
    assert (enc["x"]["field"], enc["x2"]["field"]) == ("x_start", "x_end")
    assert (enc["y"]["field"], enc["y2"]["field"]) == ("y_start", "y_end")
    assert enc["color"]["field"] == "count" and enc["color"]["scale"]["type"] == "log"
    lo, hi = grid.attrs["range"]
    assert enc["x"]["scale"]["domain"] == enc["y"]["scale"]["domain"] == [lo, hi]
    rows = pd.DataFrame(values(spec, heat))
    assert rows["count"].sum() == 10_000 and len(rows) == len(grid)
    assert line["mark"]["type"] == "line"
    assert values(spec, line) == [{"predicted": lo, "diff": lo}, {"predicted": hi, "diff": hi}]


def test_effect_scatter_draws_every_point():
    table = pd.DataFrame(
        {
            "position": [1, 1, 2],
            "token": pd.Categorical(["a", "a", "b"]),
            "in_feature": [3, 4, 5],
            "out_feature": [6, 7, 8],
            "jacobian": [0.5, 0.001, -0.2],
            "predicted": [-0.5, -0.001, 0.2],
            "diff": [-0.45, 0.02, 0.25],
            "important": [True, False, True],
        }
    )
    spec = spec_of(charts.effect_scatter(table, (-0.5, 0.25)))
    dots, line = layers(spec)
    assert dots["mark"]["type"] == "circle" and line["mark"]["type"] == "line"
    assert dots["encoding"]["x"]["field"] == "predicted"
    assert dots["encoding"]["y"]["field"] == "diff"
    assert dots["encoding"]["x"]["scale"]["domain"] == [-0.5, 0.25]
    rows = values(spec, dots)
    assert [r["experiment"] for r in rows] == ["important", "unimportant", "important"]
    assert [r["diff"] for r in rows] == [-0.45, 0.02, 0.25]


def test_jacobian_heatmap():
    rows = pd.DataFrame(
        {
            "in_feature": [10, 10, 20, 20],
            "out_feature": [7, 9, 7, 9],
            "in_rank": [0, 0, 1, 1],
            "out_rank": [0, 1, 0, 1],
            "in_act": [2.0, 2.0, 1.0, 1.0],
            "out_act": [3.0, 1.0, 3.0, 1.0],
            "jacobian": [0.4, -0.1, 0.0, -0.8],
            "diff": [0.3, 0.0, 0.0, -0.7],
        }
    )
    spec = spec_of(charts.jacobian_heatmap(rows, selected=(20, 9)))
    cells, outline = layers(spec)
    assert cells["mark"]["type"] == "rect"
    enc = cells["encoding"]
    assert enc["x"]["field"] == "in_feature" and enc["x"]["type"] == "ordinal"
    assert enc["y"]["field"] == "out_feature" and enc["y"]["type"] == "ordinal"
    assert enc["x"]["sort"]["field"] == "in_rank"
    assert enc["color"]["scale"]["domain"] == [-0.8, 0.8]  # symmetric around 0
    assert len(values(spec, cells)) == 4
    assert values(spec, outline)[0]["in_feature"] == 20
    assert values(spec, outline)[0]["out_feature"] == 9
    (cell,) = spec["params"]  # a click on a cell selects its connection, on the cells only
    assert cell["name"] == charts.CELL_SELECTION
    assert cell["select"] == {
        "type": "point",
        "fields": ["in_feature", "out_feature"],
        "on": "click",
    }
    assert cell["views"] == [cells["name"]]
    assert (
        "layer" in spec_of(charts.jacobian_heatmap(rows))
        and len(spec_of(charts.jacobian_heatmap(rows))["layer"]) == 1
    )


def test_jacobian_heatmap_marks_the_true_edges():
    """With ``explore.mark_true_edges``'s column, one hollow diamond per true edge, on the
    cells' axes, under the selection's outline."""
    rows = heatmap_rows()
    edges = pd.DataFrame({"in_feature": [40, 38, 99], "out_feature": [90, 92, 90]})
    marked = explore.mark_true_edges(rows, edges)
    assert marked["true_edge"].sum() == 2 and explore.mark_true_edges(rows, None) is rows
    spec = spec_of(charts.jacobian_heatmap(marked, selected=(39, 91)))
    cells, diamonds, outline = layers(spec)
    assert diamonds["mark"] == {
        "type": "point",
        "shape": "diamond",
        "filled": False,
        "color": "#be4bdb",  # HIGHLIGHT: reads on the light and the dark theme
        "size": 60,
    }
    assert diamonds["encoding"]["x"] == cells["encoding"]["x"]
    assert diamonds["encoding"]["y"] == cells["encoding"]["y"]
    drawn = {(r["in_feature"], r["out_feature"]) for r in values(spec, diamonds)}
    assert drawn == {(40, 90), (38, 92)}
    assert len(values(spec, cells)) == len(rows)
    assert values(spec, outline)[0]["in_feature"] == 39


def heatmap_rows() -> pd.DataFrame:
    """A 3 × 4 Jacobian of position 5 as ``token_connections`` rows."""
    out_rank, in_rank = np.divmod(np.arange(12), 4)
    jacobian = np.random.default_rng(2).normal(0, 1, 12)
    return pd.DataFrame(
        {
            "position": 5,
            "in_feature": 40 - in_rank,
            "out_feature": 90 + out_rank,
            "in_rank": in_rank,
            "out_rank": out_rank,
            "in_act": 4.0 - in_rank,
            "out_act": 3.0 - out_rank,
            "jacobian": jacobian,
            "diff": jacobian / 2,
        }
    )


@pytest.mark.parametrize("order", list(explore.HEATMAP_ORDERS))
def test_jacobian_heatmap_sorts_by_the_chosen_order(order):
    ordered = explore.order_connections(heatmap_rows(), order)
    spec = spec_of(charts.jacobian_heatmap(ordered, selected=(39, 91), order=order))
    cells, outline = layers(spec)
    name = explore.HEATMAP_ORDER_TITLES[order]
    for layer in (cells, outline):
        enc = layer["encoding"]
        assert enc["x"]["sort"] == {"field": "in_order", "order": "ascending"}
        assert enc["y"]["sort"] == {"field": "out_order", "order": "ascending"}
        assert enc["x"]["title"] == f"in_feature ({name})"
        assert enc["y"]["title"] == f"out_feature ({name})"
    drawn = values(spec, cells)
    assert len(drawn) == 12
    place = {r["in_feature"]: r["in_order"] for r in drawn}
    expected = ordered.drop_duplicates("in_feature").set_index("in_feature")["in_order"]
    assert place == expected.to_dict()
    assert values(spec, outline)[0]["in_order"] == expected[39]
    if order == explore.SHUFFLED:
        assert "random" in cells["encoding"]["x"]["title"]


def test_jacobian_heatmap_titles_follow_the_rows_order():
    titles = {o: explore.HEATMAP_ORDER_TITLES[o] for o in explore.HEATMAP_ORDERS}
    assert len(set(titles.values())) == len(titles)  # each order is named apart
    with pytest.raises(ValueError, match="order_connections"):
        charts.jacobian_heatmap(heatmap_rows(), order=explore.CLUSTERED)  # rows not ordered
    with pytest.raises(ValueError, match="Unknown heatmap order"):
        charts.jacobian_heatmap(heatmap_rows(), order="alphabetical")
    plain = spec_of(charts.jacobian_heatmap(heatmap_rows()))  # activation order by default
    assert layers(plain)[0]["encoding"]["x"]["title"] == "in_feature (most active first)"


def test_dose_response_chart():
    curve = pd.DataFrame({"in_act": np.linspace(0, 5, 11), "out_act": np.linspace(0, 1, 11)})
    spec = spec_of(charts.dose_response_chart(curve, 2.0, 0.4, jacobian=0.2))
    marks = [
        layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
        for layer in layers(spec)
    ]
    assert marks == ["line", "line", "rule", "point"]
    measured, tangent, rule, point = layers(spec)
    assert len(values(spec, measured)) == 11
    t = values(spec, tangent)
    assert [r["in_act"] for r in t] == [1.0, 3.0]
    assert [r["out_act"] for r in t] == pytest.approx([0.2, 0.6])
    assert values(spec, point)[0] == {"in_act": 2.0, "out_act": 0.4, "label": "actual"}
    no_tangent = spec_of(charts.dose_response_chart(curve, 2.0, 0.4, jacobian=math.nan))
    assert len(no_tangent["layer"]) == 3


def test_jacobian_histogram_marks_eps():
    rng = np.random.default_rng(3)
    groups = {
        "jsae": explore.log_abs_jacobian(rng.normal(0, 0.001, 500)),
        "plain": explore.log_abs_jacobian(rng.normal(0, 0.1, 500)),
    }
    bins = explore.histogram_bins(groups, bins=25, value_range=(-8, 1), group_name="kind")
    spec = spec_of(charts.jacobian_histogram(bins, 0.01, log_count=True))
    bars, rule = layers(spec)
    assert bars["mark"]["type"] == "bar" and bars["encoding"]["color"]["field"] == "kind"
    assert bars["encoding"]["y"]["scale"]["type"] == "log"
    assert bars["encoding"]["x"]["scale"]["domain"] == [-8, 1]
    assert rule["mark"]["type"] == "rule"
    assert values(spec, rule)[0]["log_eps"] == pytest.approx(-2.0)
    assert sum(r["count"] for r in values(spec, bars)) == 1000


def exits_table() -> pd.DataFrame:
    """Five connections, diff = predicted + curvature + gate; two exits."""
    return pd.DataFrame(
        {
            "position": [1, 1, 2, 2, 3],
            "token": pd.Categorical(["a", "a", "b", "b", "c"]),
            "in_feature": [3, 4, 5, 6, 7],
            "out_feature": [6, 7, 8, 9, 10],
            "jacobian": [-1.0, 0.5, -0.1, -0.001, 0.002],
            "predicted": [1.0, -0.5, 0.1, 0.001, -0.002],
            "curvature": [0.2, 0.1, 0.0, 0.001, 0.0],
            "gate": [0.0, 0.0, -1.1, -0.5, 0.0],
            "diff": [1.2, -0.4, -1.0, -0.498, -0.002],
            "exited": [False, False, True, True, False],
            "important": [True, True, True, False, False],
        }
    )


def test_decomposition_bars_stack_the_shares():
    parts = explore.decomposition(exits_table())
    spec = spec_of(charts.decomposition_bars(parts))
    bars, text = layers(spec)
    assert bars["mark"]["type"] == "bar" and text["mark"]["type"] == "text"
    enc = bars["encoding"]
    assert (enc["x"]["field"], enc["x2"]["field"], enc["y"]["field"]) == (
        "start",
        "end",
        "experiment",
    )
    assert enc["x"]["scale"]["domain"] == [0, 1]
    assert enc["y"]["sort"] == ["important", "unimportant"]
    assert enc["color"]["field"] == "label"
    assert enc["color"]["scale"]["domain"] == ["exits (gate)", "linear (−s·J)", "curvature"]
    assert enc["color"]["scale"]["range"][0] == charts.EXIT_COLOR  # exits share the exits' colour
    rows = pd.DataFrame(values(spec, bars))
    imp = rows[rows["experiment"] == "important"]
    # Σ|gate| 1.1, Σ|predicted| 1.6, Σ|curvature| 0.3 of 3.0, stacked in that order.
    np.testing.assert_allclose(imp["share"], [1.1 / 3, 1.6 / 3, 0.3 / 3])
    np.testing.assert_allclose(imp["start"], [0, 1.1 / 3, 2.7 / 3])
    np.testing.assert_allclose(imp["end"], [1.1 / 3, 2.7 / 3, 1.0])
    unimp = rows[rows["experiment"] == "unimportant"]
    assert unimp["end"].iloc[-1] == pytest.approx(1.0)
    labels = pd.DataFrame(values(spec, text))
    assert labels["text"].tolist() == ["37%", "53%", "10%", "99%", "", ""]  # < 6%: unlabelled
    np.testing.assert_allclose(labels["middle"], (rows["start"] + rows["end"]) / 2)


def test_decomposition_bars_leave_out_a_group_that_did_not_move():
    table = exits_table()
    table.loc[~table["important"], ["predicted", "curvature", "gate", "diff"]] = 0.0
    spec = spec_of(charts.decomposition_bars(explore.decomposition(table)))
    rows = values(spec, layers(spec)[0])
    assert {r["experiment"] for r in rows} == {"important"}
    assert layers(spec)[0]["encoding"]["y"]["sort"] == ["important"]


def test_effect_scatter_colours_exits_apart():
    table = exits_table()
    spec = spec_of(charts.effect_scatter(table, (-1.0, 1.2)))
    dots, _line = layers(spec)
    color = dots["encoding"]["color"]
    assert color["field"] == "group"
    assert color["scale"]["domain"] == ["important", "unimportant", charts.EXIT_LABEL]
    assert color["scale"]["range"][2] == charts.EXIT_COLOR
    rows = values(spec, dots)
    assert [r["group"] for r in rows] == [
        "important",
        "important",
        charts.EXIT_LABEL,
        charts.EXIT_LABEL,
        "unimportant",
    ]
    assert [r["experiment"] for r in rows][2:4] == ["important", "unimportant"]
    assert [r["exited"] for r in rows] == [False, False, True, True, False]


def test_effect_density_draws_exits_in_their_own_layer():
    rng = np.random.default_rng(5)
    n = 2000
    exited = rng.random(n) < 0.2
    out_act = rng.uniform(0.5, 2, n)
    predicted = rng.normal(0, 0.3, n)
    table = pd.DataFrame(
        {
            "predicted": predicted,
            "diff": np.where(exited, -out_act, predicted + rng.normal(0, 0.05, n)),
            "exited": exited,
        }
    )
    grid = explore.effect_grid(table, 20)
    spec = spec_of(charts.effect_density(grid))
    heat, exits, line = layers(spec)
    assert heat["mark"]["type"] == exits["mark"]["type"] == "rect"
    assert line["mark"]["type"] == "line"
    assert heat["encoding"]["color"]["field"] == "count"
    assert exits["encoding"]["color"]["field"] == "group"
    assert exits["encoding"]["color"]["scale"] == {
        "domain": [charts.EXIT_LABEL],
        "range": [charts.EXIT_COLOR],
    }
    assert exits["encoding"]["opacity"]["field"] == "count"
    assert spec["resolve"]["scale"]["color"] == "independent"
    assert sum(r["count"] for r in values(spec, heat)) == (~exited).sum()
    assert sum(r["count"] for r in values(spec, exits)) == exited.sum()
    # Without exits: the heatmap and the line only, as before.
    calm = spec_of(charts.effect_density(explore.effect_grid(table[~exited], 20)))
    assert [layer["mark"]["type"] for layer in layers(calm)] == ["rect", "line"]


def test_dose_response_chart_draws_the_ungated_line_and_the_exits():
    a = np.linspace(0, 5, 11)
    curve = pd.DataFrame(
        {
            "in_act": a,
            "pre": 1.0 - 0.3 * a,
            "out_act": np.where(a <= 2.0, 1.0 - 0.3 * a, 0.0),
            "in_top_k": a <= 2.0,
        }
    )
    steps = explore.top_k_steps(curve, actual_in=1.0)
    spec = spec_of(charts.dose_response_chart(curve, 1.0, 0.7, jacobian=-0.3, steps=steps))
    marks = [layer["mark"]["type"] for layer in layers(spec)]
    assert marks == ["line", "line", "line", "rule", "rule", "point"]
    measured, pre, tangent, exits, actual, point = layers(spec)
    assert [r["out_act"] for r in values(spec, pre)] == pytest.approx(curve["pre"].tolist())
    assert {r["series"] for r in values(spec, pre)} == {charts.DOSE_PRE}
    assert pre["mark"]["strokeDash"] == [2, 2]
    assert [r["out_act"] for r in values(spec, measured)] == pytest.approx(curve["out_act"])
    marked = values(spec, exits)
    assert [(r["in_act"], r["series"]) for r in marked] == [(2.25, explore.LEAVES)]
    color = measured["encoding"]["color"]["scale"]
    assert color["domain"] == [*charts.DOSE_SERIES[:1], charts.DOSE_PRE, charts.DOSE_SERIES[1]] + [
        explore.LEAVES
    ]
    assert color["range"][-1] == charts.EXIT_COLOR
    assert exits["encoding"]["color"]["scale"] == measured["encoding"]["color"]["scale"]
    assert values(spec, point)[0]["in_act"] == 1.0


def test_margin_chart_runs_from_the_runner_up():
    rows = pd.DataFrame(
        {
            "position": 4,
            "in_feature": [7, 7, 7, 8, 8, 8],
            "out_feature": [10, 11, 12] * 2,
            "out_act": [2.0, 0.8, 0.0] * 2,
            "margin": [2.3, 1.1, 0.2] * 2,
            "exited": [False, False, True, False, True, True],
        }
    )
    margins = explore.output_margins(rows)
    spec = spec_of(charts.margin_chart(margins, selected=11))
    bars, rule = layers(spec)
    assert bars["mark"]["type"] == "bar" and rule["mark"]["type"] == "rule"
    assert (bars["encoding"]["x"]["field"], bars["encoding"]["x2"]["field"]) == (
        "bar_start",
        "bar_end",
    )
    assert bars["encoding"]["y"]["sort"] == [12, 11, 10]  # smallest margin on top
    drawn = pd.DataFrame(values(spec, bars))
    np.testing.assert_allclose(drawn["bar_start"], [-0.3] * 3, atol=1e-9)
    np.testing.assert_allclose(drawn["bar_end"], [-0.1, 0.8, 2.0], atol=1e-9)
    np.testing.assert_allclose(drawn["bar_end"] - drawn["bar_start"], drawn["margin"], atol=1e-9)
    assert drawn["selected"].tolist() == [False, True, False]
    assert drawn["p_exit"].tolist() == [1.0, 0.5, 0.0]
    assert values(spec, rule)[0]["runner_up"] == pytest.approx(-0.3)
    # With no inactive feature the bars run from 0 to the margin, and there is no rule.
    every = margins.assign(runner_up=-math.inf, margin=math.inf)
    spec = spec_of(charts.margin_chart(every))
    assert len(layers(spec)) == 1
    drawn = values(spec, layers(spec)[0])
    assert all(r["bar_start"] == 0.0 and r["bar_end"] is None for r in drawn)


def test_diff_histogram_bars_are_clickable_and_the_exit_band_labelled():
    rng = np.random.default_rng(2)
    exited = rng.random(2000) < 0.1
    diff = np.where(exited, -rng.uniform(1.1, 1.6, 2000), rng.normal(0.05, 0.04, 2000))
    table = pd.DataFrame({"diff": diff, "exited": exited, "important": rng.random(2000) < 0.3})
    bins = explore.diff_bins(table, bins=40)
    spec = spec_of(charts.diff_histogram(bins))
    (param,) = spec["params"]
    assert param["name"] == charts.BIN_SELECTION and param["select"]["type"] == "point"
    assert param["select"]["fields"] == ["experiment", "bin_start", "bin_end"]
    shade, bars, text = layers(spec)
    assert marks(shade) == "rect" and marks(text) == "text" and marks(bars) == "bar"
    assert param["views"] == [bars["name"]]
    # The x domain is the data's own range, not ±max|diff|.
    assert bars["encoding"]["x"]["scale"]["domain"] == [diff.min(), diff.max()]
    (band,) = values(spec, shade)
    assert (band["band_start"], band["band_end"]) == (diff[exited].min(), diff[exited].max())
    assert (
        values(spec, text)[0]["label"]
        == charts.EXIT_BAND_LABEL
        == ("output feature left the top k")
    )
    for panel in charts.diff_histogram_panels(bins):
        panel_spec = spec_of(panel)
        assert panel_spec["params"][0]["name"] == charts.BIN_SELECTION
        assert len(layers(panel_spec)) == 3


def test_diff_histogram_without_exits_has_no_band(diff_bins):
    _, bins = diff_bins
    spec = spec_of(charts.diff_histogram(bins))
    assert spec["mark"]["type"] == "bar"
    assert spec["params"][0]["name"] == charts.BIN_SELECTION


def test_effect_density_axes_fit_the_predictions_and_cells_are_clickable():
    rng = np.random.default_rng(3)
    n = 5000
    predicted = rng.normal(0, 0.01, n)  # predictions far smaller than the diffs
    exited = rng.random(n) < 0.1
    diff = np.where(exited, -rng.uniform(1, 1.5, n), predicted + rng.normal(0, 0.2, n))
    table = pd.DataFrame({"predicted": predicted, "diff": diff, "exited": exited})
    spec = spec_of(charts.effect_density(explore.effect_grid(table, 20)))
    heat, exits, line = layers(spec)
    for layer in (heat, exits):
        assert layer["encoding"]["x"]["scale"]["domain"] == [predicted.min(), predicted.max()]
        assert layer["encoding"]["y"]["scale"]["domain"] == [diff.min(), diff.max()]
    (param,) = spec["params"]
    assert param["name"] == charts.DENSITY_SELECTION != charts.CELL_SELECTION
    assert param["select"]["fields"] == ["x_start", "x_end", "y_start", "y_end", "exited"]
    assert param["select"]["on"] == "click"
    # Declared once, on the first layer; its clicks reach every mark of the layered view, so
    # the exits' cells must carry every field the selection reads, their flag set.
    assert param["views"] == [heat["name"]] and "params" not in exits
    fields = param["select"]["fields"]
    for layer, flag in ((heat, False), (exits, True)):
        rows = values(spec, layer)
        assert rows and all(set(fields) <= set(r) and r["exited"] is flag for r in rows)
    # The picked cell, exits or not, is outlined; nothing is while nothing is picked.
    for layer in (heat, exits):
        stroke = layer["encoding"]["stroke"]
        assert stroke["condition"] == {
            "param": charts.DENSITY_SELECTION,
            "empty": False,
            "value": charts.HIGHLIGHT,
        }
        assert stroke["value"] is None
    # y = x only where both axes reach: the predictions' range.
    lo, hi = max(predicted.min(), diff.min()), min(predicted.max(), diff.max())
    assert values(spec, line) == [{"predicted": lo, "diff": lo}, {"predicted": hi, "diff": hi}]


def test_effect_scatter_brushes_a_region_on_the_dots():
    table = exits_table()
    spec = spec_of(charts.effect_scatter(table, (-1.0, 1.2)))
    dots, line = layers(spec)
    (param,) = spec["params"]
    assert param["name"] == charts.REGION_SELECTION
    assert param["select"] == {"type": "interval", "encodings": ["x", "y"]}
    assert param["views"] == [dots["name"]] and "name" not in line
    # the brush's x and y are the dots' predicted and diff (what picked_region reads)
    assert (dots["encoding"]["x"]["field"], dots["encoding"]["y"]["field"]) == (
        "predicted",
        "diff",
    )
    opacity = dots["encoding"]["opacity"]
    assert opacity["condition"] == [{"param": charts.REGION_SELECTION, "value": 0.7}]
    assert opacity["value"] < 0.7  # the dots outside the box fade
