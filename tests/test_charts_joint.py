"""The joint ablation's view helpers and charts, through ``chart.to_dict()``: the "removed
together" histograms (bins against ``np.histogram`` of |diff| and of |diff| / out_act per
set), the faithfulness curves (one line per order, the score in the corner) and both pairs'
curves on one chart. The expected rows are computed here from small frames."""

import math

import numpy as np
import pandas as pd
import pytest

from jsae import charts, explore
from jsae.analysis import ORDERS, SETS, JointStatistics
from jsae.analysis.faithfulness import CURVE_COLUMNS, SET_COLUMNS
from jsae.errors import InputError
from tests.test_charts_analysis import data_of, marks


@pytest.fixture
def set_rows() -> pd.DataFrame:
    """``set_frame``-like rows: a few (token, j) per set, one with out_act 0."""
    rng = np.random.default_rng(3)
    n = 12
    frame = pd.DataFrame(
        {
            "position": np.repeat(np.arange(1, 5), 3).tolist() * 3,
            "out_feature": np.tile(np.arange(3), 12),
            "out_act": np.concatenate([[0.0], rng.uniform(0.5, 2, 3 * n - 1)]),
            "set": np.repeat(list(SETS), n),
            "size": rng.integers(1, 8, 3 * n),
            "diff": np.concatenate([rng.normal(0, s, n) for s in (0.2, 1.0, 0.8)]),
            "exited": rng.random(3 * n) < 0.2,
        }
    )
    return frame


def expected_groups(rows: pd.DataFrame, share: bool) -> dict[str, np.ndarray]:
    groups = {}
    for name in SETS:
        part = rows[rows["set"] == name]
        values = []
        for d, act in zip(part["diff"], part["out_act"], strict=True):
            if not share:
                values.append(abs(d))
            elif act > 0:
                values.append(abs(d) / act)
        groups[name] = np.array(values)
    return groups


@pytest.mark.parametrize("value", ["abs_diff", "share"])
def test_joint_bins_count_each_sets_values_from_zero(set_rows, value):
    bins = explore.joint_bins(set_rows, value, bins=7)
    groups = expected_groups(set_rows, value == "share")
    top = max(v.max() for v in groups.values())
    assert bins.attrs["range"] == (0.0, pytest.approx(top))
    edges = np.linspace(0, top, 8)
    for name in SETS:
        counts, _ = np.histogram(groups[name], bins=edges)
        drawn = bins[bins["set"] == name]
        assert drawn["count"].tolist() == counts[counts > 0].tolist()
        np.testing.assert_allclose(drawn["bin_start"], edges[:-1][counts > 0])
        np.testing.assert_allclose(drawn["share"], counts[counts > 0] / len(groups[name]))
    # out_act = 0 has no share: one row fewer in that set
    assert len(explore.set_values(set_rows, "share")["unimportant"]) == 11


def test_joint_bins_of_nothing_and_a_bad_value(set_rows):
    empty = explore.joint_bins(set_rows.iloc[:0])
    assert empty.empty and empty.attrs["range"] == (0.0, 1.0)
    with pytest.raises(InputError, match="Unknown value 'diff'"):
        explore.set_values(set_rows, "diff")


def test_set_histogram_overlay_and_panels(set_rows):
    bins = explore.joint_bins(set_rows, "share", bins=5)
    spec = charts.set_histogram(bins, value="share", log_count=True).to_dict()
    enc = spec["encoding"]
    assert enc["color"]["field"] == "set"
    assert enc["color"]["scale"] == {"domain": list(SETS), "range": charts.SET_COLORS}
    assert enc["x"]["scale"]["domain"] == list(bins.attrs["range"])
    assert enc["x"]["title"] == explore.JOINT_VALUES["share"]
    assert enc["y"]["scale"]["type"] == "log"
    rows = pd.DataFrame(data_of(spec, spec))
    pd.testing.assert_series_equal(rows["count"], bins["count"], check_dtype=False)
    panels = [p.to_dict() for p in charts.set_histogram_panels(bins, y="share")]
    assert len(panels) == len(SETS)
    for name, panel in zip(SETS, panels, strict=True):
        assert {r["set"] for r in data_of(panel, panel)} == {name}
        assert panel["encoding"]["x"]["scale"]["domain"] == list(bins.attrs["range"])
        assert panel["encoding"]["y"]["field"] == "share"


def joint(curve_values: dict[str, list[float]], ci=(0.1, 0.9)) -> JointStatistics:
    """A ``JointStatistics`` with the given mean-|diff| curves (k_in = len - 1)."""
    k_in = len(next(iter(curve_values.values()))) - 1
    rows = [
        (order, m, m / k_in, v, v / 2, m / (2 * k_in))
        for order in ORDERS
        for m, v in enumerate(curve_values[order])
    ]
    curves = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
    area = {o: float(np.trapezoid(curve_values[o], np.linspace(0, 1, k_in + 1))) for o in ORDERS}
    sets = pd.DataFrame(columns=list(SET_COLUMNS))
    return JointStatistics(0.01, k_in, 3, 5, 10, sets, curves, area, ci)


@pytest.fixture
def joints() -> dict[str, JointStatistics]:
    return {
        "jsae": joint(
            {
                "jacobian": [0, 0.5, 1.5, 2],
                "reverse": [0, 1.8, 1.9, 2],
                "oracle": [0, 0.1, 0.5, 2],
                "random": [0, 0.7, 1.4, 2],
            }
        ),
        "plain": joint(
            {
                "jacobian": [0, 0.1, 0.2, 1],
                "reverse": [0, 0.9, 1, 1],
                "oracle": [0, 0.05, 0.2, 1],
                "random": [0, 0.4, 0.7, 1],
            },
            ci=(math.nan, math.nan),
        ),
    }


def test_score_label_and_frame(joints):
    # jsae: areas (trapezoids, h = 1/3) random 3.1 h, jacobian 3.0 h, oracle 1.6 h
    score = (3.1 - 3.0) / (3.1 - 1.6)
    assert joints["jsae"].score == pytest.approx(score)
    assert explore.score_label(joints["jsae"]) == f"score {score:.3g} [0.1, 0.9]"
    assert explore.score_label(joints["plain"]).count("[") == 0
    frame = explore.score_frame(joints)
    assert frame["kind"].tolist() == ["jsae", "plain"]
    assert frame["score"].iloc[0] == pytest.approx(score)


def test_faithfulness_curves(joints):
    curves = joints["jsae"].curves
    for y in ("mean_abs_diff", "mean_share"):
        spec = charts.faithfulness_curves(curves, "score 0.5 [0.1, 0.9]", y=y).to_dict()
        assert marks(spec) == ["line", "text"]
        lines, text = spec["layer"]
        enc = lines["encoding"]
        assert enc["x"]["field"] == "fraction" and enc["x"]["scale"]["domain"] == [0, 1]
        assert enc["y"]["field"] == y and enc["y"]["title"] == explore.CURVE_VALUES[y]
        labels = [explore.ORDER_LABELS[o] for o in ORDERS]
        assert enc["color"]["field"] == "order_label"
        assert enc["color"]["scale"]["domain"] == labels
        dashes = dict(zip(labels, enc["strokeDash"]["scale"]["range"], strict=True))
        assert dashes[explore.ORDER_LABELS["jacobian"]] == [1, 0]
        assert dashes[explore.ORDER_LABELS["random"]] != [1, 0]
        rows = pd.DataFrame(data_of(spec, lines))
        for order in ORDERS:
            drawn = rows[rows["order"] == order]
            assert drawn["order_label"].unique().tolist() == [explore.ORDER_LABELS[order]]
            np.testing.assert_allclose(drawn["fraction"], [0, 1 / 3, 2 / 3, 1])
            np.testing.assert_allclose(drawn[y], curves.loc[curves["order"] == order, y])
        # the score in the bottom-right corner
        assert data_of(spec, text) == [{"fraction": 1.0, y: 0.0, "label": "score 0.5 [0.1, 0.9]"}]
        assert text["mark"]["align"] == "right" and text["mark"]["baseline"] == "bottom"


def test_curve_frame_rescales_each_pair_by_its_full_removal(joints):
    frame = explore.curve_frame(joints, explore.COMPARED_ORDERS)
    assert set(frame["order"]) == set(explore.COMPARED_ORDERS)
    for kind, full in (("jsae", 2.0), ("plain", 1.0)):  # the curves' value at m = k_in
        rows = frame[frame["kind"] == kind]
        np.testing.assert_allclose(rows["relative_abs_diff"], rows["mean_abs_diff"] / full)
    # the score is a ratio of areas: rescaling a pair's curves leaves it as it was
    relative = frame[frame["kind"] == "jsae"].groupby("order")
    area = {o: np.trapezoid(g["relative_abs_diff"], g["fraction"]) for o, g in relative}
    score = (area["random"] - area["jacobian"]) / (area["random"] - area["oracle"])
    assert score == pytest.approx(joints["jsae"].score)


def test_faithfulness_comparison(joints):
    frame = explore.curve_frame(joints, explore.COMPARED_ORDERS)
    scores = explore.score_frame(joints)
    spec = charts.faithfulness_comparison(frame, scores).to_dict()
    assert spec["mark"]["type"] == "line"
    enc = spec["encoding"]
    assert enc["y"]["field"] == "relative_abs_diff"
    # one colour per pair, named with its score
    assert enc["color"]["field"] == "pair"
    names = [f"{kind}: {explore.score_label(joints[kind])}" for kind in ("jsae", "plain")]
    assert enc["color"]["scale"] == {"domain": names, "range": charts.KIND_COLORS}
    labels = [explore.ORDER_LABELS[o] for o in explore.COMPARED_ORDERS]
    widths = dict(zip(labels, enc["strokeWidth"]["scale"]["range"], strict=True))
    assert widths[labels[0]] > widths[labels[1]] == widths[labels[2]]  # |J| bold
    rows = pd.DataFrame(data_of(spec, spec))
    for kind, found in joints.items():
        assert set(rows.loc[rows["kind"] == kind, "pair"]) == {names[list(joints).index(kind)]}
        for order in explore.COMPARED_ORDERS:
            drawn = rows[(rows["kind"] == kind) & (rows["order"] == order)]
            expected = found.curves[found.curves["order"] == order]
            full = found.curves["mean_abs_diff"].iloc[-1]
            np.testing.assert_allclose(drawn["relative_abs_diff"], expected["mean_abs_diff"] / full)
    assert "reverse" not in set(rows["order"])
    shares = charts.faithfulness_comparison(frame, scores, y="mean_share").to_dict()
    assert shares["encoding"]["y"]["title"] == explore.CURVE_VALUES["mean_share"]


def test_downstream_comparison_draws_each_pair_and_order():
    frame = pd.DataFrame(
        {
            "kind": ["jsae"] * 3 + ["plain"] * 3,
            "pair": ["JSAEs"] * 3 + ["Traditional SAEs"] * 3,
            "order": ["jacobian", "oracle", "random"] * 2,
            "order_label": [explore.KEEP_LABELS[o] for o in ("jacobian", "oracle", "random")] * 2,
            "m_kept": [0, 0, 0, 2, 2, 2],
            "kept_connections": [0, 0, 0, 8, 8, 8],
            "kl_mean": [0.5, 0.5, 0.5, 0.1, 0.05, 0.3],
        }
    )
    spec = charts.downstream_comparison(frame).to_dict()
    enc = spec["encoding"]
    assert enc["x"]["field"] == "kept_connections" and enc["y"]["field"] == "kl_mean"
    assert enc["color"]["scale"]["domain"] == ["JSAEs", "Traditional SAEs"]
    assert enc["strokeDash"]["scale"]["domain"] == [
        explore.KEEP_LABELS[o] for o in ("jacobian", "oracle", "random")
    ]
    (data,) = spec["datasets"].values()
    assert [row["kl_mean"] for row in data] == frame["kl_mean"].tolist()
