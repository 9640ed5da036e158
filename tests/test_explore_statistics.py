"""The analysis as the pages show it, without Streamlit: the verdict box, the statistics
table, the mass-capture curves in long form, the ε sweep's drawable rows, the matched-fraction
comparison at the page's ε, and τ in the URL. Expected values are hand-checked or brute force."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from jsae import explore
from jsae.analysis import DEFAULT_TAU, Verdict, effect_statistics

EPS = 0.05


def found(level: str, perverse: bool = False) -> Verdict:
    return Verdict(level, f"The {level} sentence.", ("a reason",), perverse, 3.0)


@pytest.mark.parametrize(
    ("level", "style"),
    [("yes", "success"), ("partly", "info"), ("no", "warning"), ("undetermined", "info")],
)
def test_verdict_box_colours_by_level(level, style):
    assert explore.verdict_box(found(level)) == (style, f"The {level} sentence.")


def test_a_perverse_verdict_is_a_warning_led_in_bold():
    style, text = explore.verdict_box(found("no", perverse=True))
    assert style == "warning"
    assert text == "**Sparse Jacobian without sparse computation.** The no sentence."


def test_format_interval_and_value():
    assert explore.format_interval(0.912345, 0.93) == "0.912–0.93"
    assert explore.format_interval(math.nan, 0.93) == ""
    assert explore.format_interval(1234.5, math.inf) == "1.23e+03–∞"
    assert explore.format_value(24320.0) == "24,320"
    assert explore.format_value(0.9123456) == "0.9123"
    assert explore.format_value(2.5) == "2.5"
    assert explore.format_value(0.0) == "0"
    assert explore.format_value(math.nan) == "—"
    assert explore.format_value(math.inf) == "∞"


def test_statistics_table_prints_values_and_intervals():
    summary = pd.DataFrame(
        {
            "statistic": ["connections", "auc", "ratio"],
            "value": [24320.0, 0.9123456, math.inf],
            "ci_low": [math.nan, 0.9, 2.0],
            "ci_high": [math.nan, 0.93, math.inf],
            "description": ["n", "ranking", "ratio"],
        }
    )
    table = explore.statistics_table(summary)
    assert list(table.columns) == list(explore.STATISTICS_COLUMNS)
    assert table["shown"].tolist() == ["24,320", "0.9123", "∞"]
    assert table["interval"].tolist() == ["", "0.9–0.93", "2–∞"]
    assert table["value"].tolist() == summary["value"].tolist()


def synthetic(seed: int, n: int = 400, scale: float = 1.0) -> pd.DataFrame:
    """A table where |diff| grows with |J| plus noise, some exits, over 20 tokens."""
    rng = np.random.default_rng(seed)
    jac = rng.lognormal(-3, 1.5, n) * scale
    diff = -jac * rng.uniform(0.5, 1.5, n) + rng.normal(0, 0.02, n)
    exited = rng.random(n) < 0.1
    diff[exited] = -0.5
    return pd.DataFrame(
        {
            "position": np.arange(n) % 20 + 1,
            "jacobian": jac,
            "predicted": -jac,
            "diff": diff,
            "exited": exited,
        }
    )


def test_capture_frame_is_the_curves_in_long_form():
    curve = pd.DataFrame(
        {"fraction": [0.0, 0.5, 1.0], "by_jacobian": [0.0, 0.7, 1.0], "oracle": [0.0, 0.9, 1.0]}
    )
    empty = curve.assign(by_jacobian=math.nan, oracle=math.nan)  # nothing moved
    frame = explore.capture_frame({"jsae": curve, "plain": empty})
    assert list(frame.columns) == ["kind", "fraction", "ranking", "share"]
    assert set(frame["kind"]) == {"jsae"}  # NaN points are left out
    by_j = frame[frame["ranking"] == explore.BY_JACOBIAN]
    oracle = frame[frame["ranking"] == explore.ORACLE]
    assert by_j["share"].tolist() == [0.0, 0.7, 1.0]
    assert oracle["share"].tolist() == [0.0, 0.9, 1.0]
    assert by_j["fraction"].tolist() == [0.0, 0.5, 1.0]
    assert explore.capture_frame({}).empty


def test_capture_frame_of_effect_statistics():
    t = synthetic(0)
    stats = effect_statistics(t, EPS, n_bootstrap=0)
    frame = explore.capture_frame({"jsae": stats.capture_curve})
    at = frame[(frame["ranking"] == explore.BY_JACOBIAN) & np.isclose(frame["fraction"], 0.2)]
    # The top 20 % by |J| (80 of 400 connections, no ties) by brute force.
    d = np.abs(t["diff"].to_numpy())
    top = np.argsort(-np.abs(t["jacobian"].to_numpy()))[:80]
    assert at["share"].iloc[0] == pytest.approx(d[top].sum() / d.sum())


def brute_sweep(table: pd.DataFrame, eps: float, tau: float) -> dict[str, float]:
    jac, d = np.abs(table["jacobian"].to_numpy()), np.abs(table["diff"].to_numpy())
    important = jac > eps
    moved = d > tau
    out = {"fraction_important": important.mean()}
    if important.all() or not important.any():
        out["ratio"] = math.nan
    else:
        unimp = d[~important].mean()
        out["ratio"] = math.inf if unimp == 0 else d[important].mean() / unimp
    both = moved.any() and not moved.all()
    out["auc_at_eps"] = roc_auc_score(moved, important) if both else math.nan
    return out


def test_sweep_view_keeps_the_drawable_points_of_the_shown_statistics():
    tables = {"jsae": synthetic(1), "plain": synthetic(2, scale=20)}
    grid = [1e-4, 1e-3, 1e-2, 0.1, 1.0, 100.0]
    tau = 0.05
    frame = explore.sweep_view(tables, tau, grid)
    assert set(frame["statistic"]) <= set(explore.SWEEP_SHOWN)
    assert list(frame.columns) == ["kind", "eps", "statistic", "value"]
    expected = []
    for kind, table in tables.items():
        for eps in grid:
            for statistic, value in brute_sweep(table, eps, tau).items():
                drawable = math.isfinite(value) and (statistic != "ratio" or value > 0)
                if drawable:
                    expected.append((kind, eps, statistic, value))
    got = sorted(frame.itertuples(index=False, name=None))
    assert len(got) == len(expected)
    for row, want in zip(got, sorted(expected), strict=True):
        assert row[:3] == want[:3]
        assert row[3] == pytest.approx(want[3])
    # ε = 100 makes nothing important: no ratio there, and none at 1e-4 (nothing unimportant).
    ratio = frame[frame["statistic"] == "ratio"]
    assert 100.0 not in set(ratio["eps"])


def test_sweep_view_drops_an_infinite_ratio():
    t = synthetic(3)
    jac = np.abs(t["jacobian"].to_numpy())
    still = t.assign(diff=np.where(jac > 0.01, t["diff"], 0.0))  # unimportant never move
    frame = explore.sweep_view({"jsae": still}, DEFAULT_TAU, [0.01])
    assert "ratio" not in set(frame["statistic"])
    assert {"fraction_important", "auc_at_eps"} <= set(frame["statistic"])


def test_matched_comparison_splits_each_pair_at_the_jsaes_share():
    tables = {"jsae": synthetic(4), "plain": synthetic(5, scale=20)}
    m = explore.matched_comparison(tables, EPS).set_index("kind")
    jac = {kind: np.abs(t["jacobian"].to_numpy()) for kind, t in tables.items()}
    share = (jac["jsae"] > EPS).mean()
    assert m.loc["jsae", "fraction"] == pytest.approx(share)
    # The JSAE's own ε: the largest |J| at or below the page's ε (the same split).
    assert m.loc["jsae", "eps"] == jac["jsae"][jac["jsae"] <= EPS].max()
    assert m.loc["jsae", "fraction_important"] == pytest.approx(share)
    # The plain pair's: the (k+1)-th largest |J|, k = its share of its connections.
    k = round(share * len(jac["plain"]))
    assert m.loc["plain", "eps"] == np.sort(jac["plain"])[::-1][k]
    assert (jac["plain"] > m.loc["plain", "eps"]).sum() == k
    assert m.loc["plain", "eps"] > EPS  # the plain pair's |J| are larger: a larger ε
    d = np.abs(tables["plain"]["diff"].to_numpy())
    important = jac["plain"] > m.loc["plain", "eps"]
    ratio = d[important].mean() / d[~important].mean()
    assert m.loc["plain", "ratio"] == pytest.approx(ratio)


def test_tau_round_trips_through_the_url_and_is_left_out_at_its_default():
    state = explore.ViewState(tau=0.05)
    params = explore.to_query_params(state)
    assert params["tau"] == "0.05"
    back, warnings = explore.parse_query_params(params, {}, explore.ViewState())
    assert warnings == [] and back.tau == 0.05
    assert "tau" not in explore.to_query_params(explore.ViewState())
    zero, warnings = explore.parse_query_params({"tau": "0"}, {}, explore.ViewState())
    assert zero.tau == 0.0 and warnings == []


@pytest.mark.parametrize("raw", ["-0.1", "abc", "inf", "nan"])
def test_a_bad_tau_in_the_url_warns_and_uses_the_default(raw):
    state, warnings = explore.parse_query_params({"tau": raw}, {}, explore.ViewState())
    assert state.tau == DEFAULT_TAU
    assert len(warnings) == 1 and "tau" in warnings[0] and "at least 0" in warnings[0]


def test_view_of_carries_tau():
    key = explore.RunKey("tiny", None, 0, "jsae", "unit", 1.0, "Hello.")
    view = explore.view_of(key, eps=0.01, prompt=None, prompts={}, run=True, tau=0.2)
    assert view.tau == 0.2 and explore.to_query_params(view)["tau"] == "0.2"
