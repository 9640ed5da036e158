"""The mergeable corpus statistics where no corpus run reaches: empty and one-sided
experiments, the histogram tables, the quantile estimate in the first bin and between bins,
the stored form and its older variant (found by `make mutate`, see docs/mutation.md)."""

import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from jsae.corpus.mergeable import (
    ABS_EDGES,
    DIFF_EDGES,
    CorpusStats,
    ExperimentStats,
    abs_bin,
    exact_sum,
    exact_value,
)
from jsae.stats import Tolerance


def test_nothing_sums_to_zero():
    assert exact_sum(np.array([])) == 0 and exact_sum([]) == 0
    assert ExperimentStats.of([], []).sum_diff == 0


def test_an_empty_experiment_decomposes_to_nan_without_dividing_by_zero():
    assert all(math.isnan(v) for v in ExperimentStats().decomposition().values())
    still = ExperimentStats.of([0.0, -0.0], [True, False]).decomposition()
    assert still["p_exit"] == 0.0
    assert math.isnan(still["exit_mass_share"]) and math.isnan(still["on_line_mass_share"])
    assert still["mean_abs_diff_without_exits"] == 0.0
    all_exit = ExperimentStats.of([0.5, -0.25], [False, False], [True, True]).decomposition()
    assert all_exit["p_exit"] == 1.0 and all_exit["exit_mass_share"] == 1.0
    assert math.isnan(all_exit["mean_abs_diff_without_exits"])


def _stats(imp_diff, unimp_diff, unimp_exited=None):
    """Corpus statistics with the given important and unimportant diffs (|J| 0.5 and 0)."""
    jac = np.r_[np.full(len(imp_diff), 0.5), np.zeros(len(unimp_diff))]
    exited = np.r_[np.zeros(len(imp_diff), bool), np.zeros(len(unimp_diff), bool)]
    if unimp_exited is not None:
        exited[len(imp_diff) :] = unimp_exited
    return CorpusStats.of(jac, -jac, np.r_[imp_diff, unimp_diff], 0.05, exited=exited)


def test_ratio_without_exits_at_its_edges():
    """Hand-made: important mean |diff| 0.5 over unimportant 0.25, over 0 (inf), 0 over 0
    (NaN), and NaN when either side has nothing left once exits are out."""
    assert _stats([0.5, -0.5], [0.25, 1.0], [False, True]).ratio_without_exits() == 2.0
    assert _stats([0.5], [0.0, 3.0], [False, True]).ratio_without_exits() == math.inf
    assert math.isnan(_stats([0.0], [0.0]).ratio_without_exits())
    assert math.isnan(_stats([0.5], [3.0], [True]).ratio_without_exits())
    assert math.isnan(_stats([], [0.25]).ratio_without_exits())


def test_decomposition_table_layout():
    frame = _stats([0.5], [0.25]).decomposition()
    assert frame.index.name == "experiment"
    assert list(frame.index) == ["important", "unimportant", "all"]
    assert frame.loc["all", "mean_abs_diff_without_exits"] == 0.375


def test_histogram_tables_are_numpys_histograms():
    """``histogram("abs")`` and ``histogram("diff")``: the non-empty bins of np.histogram on
    ABS_EDGES and DIFF_EDGES (values strictly inside bins), per experiment."""
    rng = np.random.default_rng(5)
    middles = np.sqrt(ABS_EDGES[1:-2] * ABS_EDGES[2:-1])
    imp = rng.choice(middles, 300) * rng.choice([-1, 1], 300)
    unimp = rng.choice(middles[:400], 200) * rng.choice([-1, 1], 200)
    stats = _stats(imp, unimp)
    for of, edges, values in (
        ("abs", ABS_EDGES, (np.abs(imp), np.abs(unimp))),
        ("diff", DIFF_EDGES, (imp, unimp)),
    ):
        want_imp, _ = np.histogram(values[0], edges)
        want_unimp, _ = np.histogram(values[1], edges)
        nz = np.flatnonzero(want_imp + want_unimp)
        want = pd.DataFrame(
            {
                "bin_left": edges[nz],
                "bin_right": edges[nz + 1],
                "important": want_imp[nz],
                "unimportant": want_unimp[nz],
            }
        )
        pd.testing.assert_frame_equal(stats.histogram(of), want, check_dtype=False)
        assert (stats.histogram(of)["unimportant"] > 0).sum() < len(nz), "the sides differ"
    pd.testing.assert_frame_equal(stats.histogram(), stats.histogram("abs"))


def test_quantiles_in_the_first_bin_stay_in_it():
    """Values in [0, 1e-9) are placed linearly in that bin: never below 0, never past it."""
    stats = ExperimentStats.of([0.0, 0.0, 0.0, 5e-10], np.zeros(4, bool))
    for q in (0.0, 0.5, 1.0):
        estimate = stats.abs_quantile(q)
        assert 0.0 <= estimate < 1e-9, (q, estimate)


@pytest.mark.parametrize("value", [3e-7, 0.0123, 0.5, 42.0])
def test_a_single_value_is_estimated_inside_its_own_bin(value):
    stats = ExperimentStats.of([value], [False])
    assert abs_bin(np.array([stats.abs_quantile(0.5)]))[0] == abs_bin(np.array([value]))[0]
    assert stats.abs_quantile(0.5) == pytest.approx(value, rel=0.024)


def test_a_quantile_between_two_order_statistics_interpolates_as_numpy():
    stats = ExperimentStats.of([1.0, 100.0, 100.0, 1.0], np.zeros(4, bool))
    for q in (0.25, 0.5, 0.6):
        exact = np.quantile([1.0, 1.0, 100.0, 100.0], q)
        assert stats.abs_quantile(q) == pytest.approx(exact, rel=0.024), q


def test_stored_statistics_round_trip_as_integers():
    rng = np.random.default_rng(2)
    n = 500
    stats = CorpusStats.of(
        rng.normal(0, 0.1, n),
        rng.normal(0, 0.1, n),
        rng.normal(0, 0.1, n),
        0.05,
        Tolerance(atol=0.02, rtol=0.2),
        exited=rng.random(n) < 0.1,
    )
    stored = json.loads(json.dumps(stats.to_dict()))
    again = CorpusStats.from_dict(stored)
    assert again.eps == 0.05 and again.tolerance == Tolerance(atol=0.02, rtol=0.2)
    for a, b in ((stats.important, again.important), (stats.unimportant, again.unimportant)):
        for name in ("hist_diff", "hist_abs"):
            assert getattr(b, name).dtype == np.int64
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        for name in ("count", "within", "sum_diff", "sum_abs_diff", "exited"):
            assert getattr(a, name) == getattr(b, name), name
        assert (a.sum_abs_exited, a.sum_abs_within) == (b.sum_abs_exited, b.sum_abs_within)
    assert json.loads(json.dumps(again.to_dict())) == stored
    assert all(isinstance(c, int) for c in stored["important"]["hist_abs"][1])


def test_an_older_stored_form_still_reads():
    """Format 2 kept each sum as a (hi, lo) double-double pair and had no exit fields: the
    pair is read as its exact sum (Fractions as reference), the missing fields as 0."""
    old = {
        "count": 2,
        "within": 1,
        "sum_diff": [0.1, 1e-18],
        "sum_abs_diff": [0.3, -2e-18],
        "hist_diff": [[2000], [2]],
        "hist_abs": [[1400], [2]],
    }
    stats = ExperimentStats.from_dict(old)
    exact = Fraction(0.1) + Fraction(1e-18)
    assert Fraction(stats.sum_diff, 2 ** (1074 + 53)) == exact
    assert exact_value(stats.sum_abs_diff) == float(Fraction(0.3) + Fraction(-2e-18))
    assert (stats.exited, stats.sum_abs_exited, stats.sum_abs_within) == (0, 0, 0)
    assert stats.hist_diff[2000] == 2 and stats.hist_diff.sum() == 2
    assert stats.hist_abs[1400] == 2 and stats.hist_abs.sum() == 2


def test_statistics_at_another_eps_or_tolerance_do_not_merge():
    with pytest.raises(ValueError, match=r"^Only statistics at the same ε and tolerance merge\.$"):
        CorpusStats(0.05).merge(CorpusStats(0.05, Tolerance(atol=0.5)))
