"""The ε sweep against a per-ε loop over ``jsae.table.split``, the matched-fraction
comparison on constructed tables, and the long form for charts."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from jsae.analysis import (
    EPS_SWEEP_GRID,
    SWEEP_STATISTICS,
    eps_sweep,
    matched_fraction,
    ratio,
    sweep_frame,
)
from jsae.errors import InputError
from jsae.stats import importance_ratio, summarize
from jsae.table import DEFAULT_EPS, split


def float32_table(seed=0, n=600) -> pd.DataFrame:
    """A float32 table, as the engine writes it, with |J| exactly on some grid points (where
    the float32 comparison of ``is_important`` decides) and exits."""
    rng = np.random.default_rng(seed)
    jacobian = rng.standard_normal(n) * np.exp(rng.normal(-4, 2, n))
    jacobian[:6] = [0.1, -0.1, 0.01, 1e-3, -1e-4, 1.0]
    exited = rng.random(n) < 0.15
    diff = -jacobian + rng.normal(0, 0.02, n)
    diff[exited] = -rng.random(exited.sum())
    return pd.DataFrame(
        {
            "position": np.arange(n) // 20,
            "jacobian": jacobian.astype(np.float32),
            "predicted": (-jacobian).astype(np.float32),
            "diff": diff.astype(np.float32),
            "exited": exited,
        }
    )


def per_eps_loop(table: pd.DataFrame, grid, tau: float) -> pd.DataFrame:
    """The sweep the slow way: split at each ε and summarize."""
    rows = []
    moved = (table["diff"].abs() > tau).to_numpy()
    for eps in grid:
        s = split(table, eps)
        important = s["important"].to_numpy()
        kept = s[~s["exited"]]
        unimportant = s[~important]
        mass = unimportant["diff"].abs().astype(float)
        one_class = moved.all() or not moved.any()
        rows.append(
            {
                "eps": eps,
                "fraction_important": important.mean(),
                "ratio": importance_ratio(summarize(s)),
                "ratio_without_exits": importance_ratio(summarize(kept)),
                "exit_share_unimportant": (
                    mass[unimportant["exited"]].sum() / mass.sum() if mass.sum() > 0 else math.nan
                ),
                "auc_at_eps": math.nan
                if one_class
                else roc_auc_score(moved, important.astype(int)),
            }
        )
    return pd.DataFrame(rows)


def test_grid_is_log_spaced_and_holds_the_default_eps():
    grid = np.array(EPS_SWEEP_GRID)
    assert len(grid) == 25 and grid[0] == pytest.approx(1e-4) and grid[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(np.log10(grid)), 1 / 6)
    assert np.isclose(grid, DEFAULT_EPS).any()


@pytest.mark.parametrize("tau", [0.05, 0.3])
def test_sweep_matches_a_per_eps_loop(tau):
    t = float32_table()
    grid = [*EPS_SWEEP_GRID, 0.1, 0.01, 1e-3]  # 0.1, 0.01 sit exactly on some |J|
    got = eps_sweep(t, grid, tau)
    expected = per_eps_loop(t, grid, tau)
    assert list(got.columns) == ["eps", *SWEEP_STATISTICS]
    pd.testing.assert_frame_equal(got, expected, rtol=1e-9, check_dtype=False)


def test_sweep_on_a_hand_table():
    t = pd.DataFrame(
        {
            "jacobian": [0.5, 0.05, 0.005],
            "diff": [1.0, 0.2, 0.05],
            "exited": [False, True, False],
        }
    )
    s = eps_sweep(t, [0.01, 0.1], tau=0.1).set_index("eps")
    assert s.loc[0.01, "fraction_important"] == pytest.approx(2 / 3)
    assert s.loc[0.01, "ratio"] == pytest.approx((1.2 / 2) / 0.05)
    assert s.loc[0.1, "ratio"] == pytest.approx(1.0 / (0.25 / 2))
    assert s.loc[0.1, "ratio_without_exits"] == pytest.approx(1.0 / 0.05)
    assert s.loc[0.1, "exit_share_unimportant"] == pytest.approx(0.2 / 0.25)
    # moved: rows 0 and 1. At ε = 0.01 both are flagged and row 2 is not: perfect; at 0.1
    # one of two moved rows is flagged and the row that did not move is not: (1/2 + 1) / 2
    assert s.loc[0.01, "auc_at_eps"] == pytest.approx(1.0)
    assert s.loc[0.1, "auc_at_eps"] == pytest.approx(0.75)


def test_sweep_edge_cases():
    empty = eps_sweep(float32_table().iloc[:0], [0.01, 0.1])
    assert len(empty) == 2 and empty[list(SWEEP_STATISTICS)].isna().all().all()
    bare = eps_sweep(float32_table().drop(columns="exited"), [0.01])
    assert bare[["ratio_without_exits", "exit_share_unimportant"]].isna().all().all()
    assert not bare["ratio"].isna().any()
    still = eps_sweep(float32_table().assign(diff=0.0), [0.01])
    assert still["auc_at_eps"].isna().all() and still["ratio"].isna().all()
    everything = eps_sweep(float32_table(), [1e-9])  # no unimportant connection is left
    assert everything["ratio"].isna().all() and everything["fraction_important"].iloc[0] == 1
    with pytest.raises(InputError):
        eps_sweep(float32_table(), [0.01, 0.0])


def constructed_tables() -> dict[str, pd.DataFrame]:
    """Two kinds of ten connections, |J| 0.1 .. 0.01 and −1 .. −0.1: the JSAE's movement
    falls with |J|, the plain pair's rises; row 8 exits in both."""
    abs_j = np.arange(10, 0, -1) / 100
    diff = np.array([5, 4, 3, 2, 1, 0.5, 0.4, 0.3, 0.2, 0.1])
    exited = np.array([False] * 8 + [True, False])
    jsae = pd.DataFrame({"jacobian": abs_j, "diff": diff, "exited": exited})
    plain = pd.DataFrame({"jacobian": -abs_j * 10, "diff": diff[::-1], "exited": exited})
    return {"jsae": jsae, "plain": plain}


def test_matched_fraction_picks_each_kinds_eps():
    tables = constructed_tables()
    m = matched_fraction(tables, 0.3).set_index("kind")
    # the top 3 of 10 by |J|: ε is the 4th largest |J| of each kind
    assert m.loc["jsae", "eps"] == pytest.approx(0.07)
    assert m.loc["plain", "eps"] == pytest.approx(0.7)
    assert (m["fraction_important"] == 0.3).all() and (m["connections"] == 10).all()
    assert m.loc["jsae", "ratio"] == pytest.approx((12 / 3) / (4.5 / 7))
    assert m.loc["plain", "ratio"] == pytest.approx((0.6 / 3) / (15.9 / 7))
    for kind in tables:
        assert m.loc[kind, "ratio"] == pytest.approx(ratio(tables[kind], m.loc[kind, "eps"]))
    # row 8 is unimportant in both: |diff| 0.2 of the JSAE's 4.5, 4.0 of the plain's 15.9
    assert m.loc["jsae", "exit_share_unimportant"] == pytest.approx(0.2 / 4.5)
    assert m.loc["plain", "exit_share_unimportant"] == pytest.approx(4.0 / 15.9)
    assert m.loc["jsae", "ratio_without_exits"] == pytest.approx((12 / 3) / (4.3 / 6))


def test_matched_fraction_defaults_to_the_reference_at_its_eps():
    tables = constructed_tables()
    by_reference = matched_fraction(tables, reference="jsae", reference_eps=0.065)
    pd.testing.assert_frame_equal(by_reference, matched_fraction(tables, 0.4))
    default = matched_fraction(tables).set_index("kind")  # jsae's share at DEFAULT_EPS
    assert default.loc["jsae", "fraction"] == pytest.approx(0.9)
    with pytest.raises(InputError, match="jsae"):
        matched_fraction({"plain": tables["plain"]})
    with pytest.raises(InputError):
        matched_fraction(tables, 1.5)


def test_matched_fraction_ties_and_ends():
    tied = pd.DataFrame({"jacobian": [0.3, 0.2, 0.2, 0.1], "diff": [1.0, 1.0, 1.0, 1.0]})
    row = matched_fraction({"x": tied}, 0.5).iloc[0]
    # the top 2 would split the tie at 0.2: ε = 0.2 keeps only the 0.3 important
    assert row["eps"] == pytest.approx(0.2) and row["fraction_important"] == 0.25
    assert math.isnan(row["ratio_without_exits"])  # no exited column
    everything = matched_fraction({"x": tied}, 1.0).iloc[0]
    assert everything["eps"] == 0.0 and everything["fraction_important"] == 1.0
    nothing = matched_fraction({"x": tied}, 0.0).iloc[0]
    assert nothing["eps"] == pytest.approx(0.3) and nothing["fraction_important"] == 0.0
    empty = matched_fraction({"x": tied.iloc[:0]}, 0.5).iloc[0]
    assert math.isnan(empty["eps"]) and empty["connections"] == 0


def test_sweep_frame_is_the_sweeps_in_long_form():
    tables = {"jsae": float32_table(1), "plain": float32_table(2)}
    grid = [0.001, 0.01, 0.1]
    long = sweep_frame(tables, grid)
    assert list(long.columns) == ["kind", "eps", "statistic", "value"]
    assert len(long) == 2 * len(grid) * len(SWEEP_STATISTICS)
    for kind, table in tables.items():
        wide = long[long["kind"] == kind].pivot(index="eps", columns="statistic", values="value")
        expected = eps_sweep(table, grid).set_index("eps")[list(SWEEP_STATISTICS)]
        pd.testing.assert_frame_equal(
            wide[list(SWEEP_STATISTICS)], expected, check_names=False, check_dtype=False
        )
    assert sweep_frame({}, grid).empty
