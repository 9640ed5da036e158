"""The explorer's view of the diff decomposition, without Streamlit: the mass split per
experiment, P(exit), the effect grid's exits, the output features' margins and the top-k
steps of a dose-response curve; all against hand-made tables and hand-checked numbers."""

import math

import numpy as np
import pandas as pd
import pytest

from jsae import explore
from jsae.errors import InputError


def hand_table() -> pd.DataFrame:
    """Three important and two unimportant connections; diff = predicted + curvature + gate."""
    predicted = [1.0, -0.5, 0.1, 0.001, -0.002]
    curvature = [0.2, 0.1, 0.0, 0.001, 0.0]
    gate = [0.0, 0.0, -1.1, -0.5, 0.0]
    return pd.DataFrame(
        {
            "predicted": predicted,
            "curvature": curvature,
            "gate": gate,
            "diff": [1.2, -0.4, -1.0, -0.498, -0.002],
            "exited": [False, False, True, True, False],
            "important": [True, True, True, False, False],
        }
    )


def test_decomposition_by_hand():
    parts = explore.decomposition(hand_table())
    assert parts["experiment"].tolist() == ["important"] * 3 + ["unimportant"] * 3
    assert parts["part"].tolist() == ["gate", "predicted", "curvature"] * 2
    got = parts.set_index(["experiment", "part"])
    # important: Σ|gate| = 1.1, Σ|predicted| = 1.6, Σ|curvature| = 0.3, all 3.0
    for part, mass in (("gate", 1.1), ("predicted", 1.6), ("curvature", 0.3)):
        assert got.loc[("important", part), "mass"] == pytest.approx(mass)
        assert got.loc[("important", part), "share"] == pytest.approx(mass / 3.0)
    # signed, against sign(diff) = (+, −, −): predicted 1 + .5 − .1, curvature .2 − .1
    for part, signed in (("gate", 1.1), ("predicted", 1.4), ("curvature", 0.1)):
        assert got.loc[("important", part), "signed"] == pytest.approx(signed)
        assert got.loc[("important", part), "signed_share"] == pytest.approx(signed / 2.6)
    assert got.loc[("important", "gate"), "abs_diff"] == pytest.approx(2.6)
    assert got.loc[("important", "gate"), "cancelled"] == pytest.approx(1 - 2.6 / 3.0)
    # unimportant: 0.5, 0.003, 0.001 of 0.504; Σ|diff| = 0.5 (the 0.002 pushed up cancels)
    for part, mass in (("gate", 0.5), ("predicted", 0.003), ("curvature", 0.001)):
        assert got.loc[("unimportant", part), "share"] == pytest.approx(mass / 0.504)
    assert got.loc[("unimportant", "gate"), "cancelled"] == pytest.approx(1 - 0.5 / 0.504)
    assert got.loc[("unimportant", "gate"), "connections"] == 2
    for _, group in parts.groupby("experiment"):
        assert group["share"].sum() == pytest.approx(1.0)
        assert group["signed_share"].sum() == pytest.approx(1.0)
    assert parts["label"].tolist()[:3] == list(explore.PARTS.values())


def test_decomposition_of_one_group_and_of_no_movement():
    table = hand_table()
    only = explore.decomposition(table[~table["important"]])
    assert set(only["experiment"]) == {"unimportant"}
    still = table.assign(predicted=0.0, curvature=0.0, gate=0.0, diff=0.0)
    parts = explore.decomposition(still)
    assert parts["share"].isna().all() and parts["signed_share"].isna().all()
    assert (parts["mass"] == 0).all()


def test_exit_rates_by_hand():
    rates = explore.exit_rates(hand_table())
    assert rates.index.tolist() == ["important", "unimportant"]
    assert rates.loc["important", "exits"] == 1 and rates.loc["important", "connections"] == 3
    assert rates.loc["important", "p_exit"] == pytest.approx(1 / 3)
    assert rates.loc["important", "exit_mass_share"] == pytest.approx(1.0 / 2.6)
    assert rates.loc["unimportant", "p_exit"] == pytest.approx(0.5)
    assert rates.loc["unimportant", "exit_mass_share"] == pytest.approx(0.498 / 0.5)
    table = hand_table()
    empty = explore.exit_rates(table[~table["important"]])
    assert empty.loc["important", "connections"] == 0
    assert math.isnan(empty.loc["important", "p_exit"])


def test_decomposition_needs_the_new_columns():
    old = hand_table().drop(columns=["gate", "exited"])
    with pytest.raises(InputError, match="exited, gate"):
        explore.decomposition(old)
    with pytest.raises(InputError, match="rerun the ablation"):
        explore.exit_rates(old)


def test_format_share():
    assert explore.format_share(0.12345) == "12.3%"
    assert explore.format_share(np.float64(1.0)) == "100.0%"
    assert explore.format_share(math.nan) == "—" and explore.format_share(None) == "—"


def test_effect_grid_counts_exits_apart():
    rng = np.random.default_rng(4)
    n = 400
    table = pd.DataFrame(
        {
            "predicted": rng.normal(size=n),
            "diff": rng.normal(size=n),
            "exited": rng.random(n) < 0.25,
        }
    )
    grid = explore.effect_grid(table, 10)
    # Each axis on its own data's range.
    x_range = (table["predicted"].min(), table["predicted"].max())
    y_range = (table["diff"].min(), table["diff"].max())
    assert grid.attrs["range"] == x_range and grid.attrs["y_range"] == y_range
    x_edges, y_edges = np.linspace(*x_range, 11), np.linspace(*y_range, 11)
    for flag in (False, True):
        part = table[table["exited"] == flag]
        counts, _, _ = np.histogram2d(part["predicted"], part["diff"], bins=[x_edges, y_edges])
        cells = grid[grid["exited"] == flag]
        assert cells["count"].sum() == len(part) == counts.sum()
        assert sorted(cells["count"]) == sorted(counts[counts > 0].astype(int))
    no_exits = explore.effect_grid(table.drop(columns=["exited"]), 10)
    assert not no_exits["exited"].any() and no_exits["count"].sum() == n


def test_miss_display_order_puts_the_key_columns_first():
    columns = ["position", "in_feature", "diff", "pre_diff", "exited", "entered", "margin", "miss"]
    order = explore.miss_display_order(pd.DataFrame(columns=["open", *columns]))
    assert order == [
        "open",
        "diff",
        "miss",
        "exited",
        "position",
        "in_feature",
        "pre_diff",
        "entered",
        "margin",
    ]
    assert set(explore.MISS_COLUMNS) >= {"exited", "entered", "margin", "gate", "curvature"}


def token_rows(margins, out_acts, exited, position=4) -> pd.DataFrame:
    """Two input features × the given output features, as ``token_connections`` rows."""
    outs = list(margins)
    return pd.DataFrame(
        {
            "position": position,
            "in_feature": np.repeat([7, 8], len(outs)),
            "out_feature": outs * 2,
            "out_act": [out_acts[o] for o in outs] * 2,
            "margin": [margins[o] for o in outs] * 2,
            "exited": exited,
        }
    )


def test_output_margins_by_hand():
    # runner-up −0.3: feature 12's pre-activation −0.1 is active but ReLU'd to 0.
    rows = token_rows(
        {10: 2.3, 11: 1.1000001, 12: 0.2},
        {10: 2.0, 11: 0.8, 12: 0.0},
        [False, False, True, False, True, True],
    )
    got = explore.output_margins(rows)
    assert got.columns.tolist() == list(explore.MARGIN_COLUMNS)
    assert got["out_feature"].tolist() == [12, 11, 10]  # smallest margin first
    assert got["runner_up"].tolist() == pytest.approx([-0.3] * 3, abs=1e-6)
    assert got["out_pre"].tolist() == pytest.approx([-0.1, 0.8, 2.0], abs=1e-6)
    assert got["margin"].tolist() == pytest.approx([0.2, 1.1, 2.3], abs=1e-6)
    assert got["exits"].tolist() == [2, 1, 0] and got["connections"].tolist() == [2, 2, 2]
    assert got["p_exit"].tolist() == [1.0, 0.5, 0.0]


def test_output_margins_without_a_runner_up():
    every = token_rows({1: math.inf, 2: math.inf}, {1: 1.0, 2: 0.5}, [False] * 4)
    got = explore.output_margins(every)
    assert (got["runner_up"] == -math.inf).all()
    assert got["out_pre"].tolist() == [1.0, 0.5]
    dark = token_rows({1: 0.4, 2: 0.1}, {1: 0.0, 2: 0.0}, [False] * 4)
    got = explore.output_margins(dark)  # no feature above 0: the runner-up is unknown
    assert got["runner_up"].isna().all() and got["out_pre"].isna().all()
    assert got["margin"].tolist() == [0.1, 0.4]


def test_output_margins_reads_one_token():
    rows = token_rows({1: 0.4}, {1: 1.0}, [False, False])
    with pytest.raises(InputError, match="one token"):
        explore.output_margins(pd.concat([rows, rows.assign(position=5)]))
    with pytest.raises(InputError, match="margin"):
        explore.output_margins(rows.drop(columns=["margin"]))


def test_top_k_steps_walk_away_from_the_actual_point():
    curve = pd.DataFrame(
        {
            "in_act": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            "in_top_k": [False, False, True, True, False, True],
        }
    )
    steps = explore.top_k_steps(curve, actual_in=2.5)
    assert steps["in_act"].tolist() == [1.5, 3.5, 4.5]
    assert steps["from_act"].tolist() == [1.0, 3.0, 4.0]
    assert steps["to_act"].tolist() == [2.0, 4.0, 5.0]
    assert steps["event"].tolist() == [explore.LEAVES, explore.LEAVES, explore.REENTERS]
    shuffled = curve.sample(frac=1, random_state=0)
    pd.testing.assert_frame_equal(explore.top_k_steps(shuffled, 2.5), steps)
    assert explore.top_k_steps(curve.assign(in_top_k=True), 2.5).empty
    assert explore.top_k_steps(curve.drop(columns=["in_top_k"]), 2.5).empty
