"""The ε-free statistics, the split's numbers at one ε and their token bootstrap, each
against an independent computation: hand-checked numbers, brute-force loops, scikit-learn /
SciPy on explicitly resampled tables."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta, rankdata, spearmanr
from sklearn.metrics import roc_auc_score

from jsae.analysis import (
    BOOTSTRAPPED,
    EffectStatistics,
    auc,
    bootstrap_replicates,
    capture_at,
    clopper_pearson_upper,
    effect_statistics,
    exit_mass_share,
    exit_share_unimportant,
    mass_capture,
    on_line_share_count,
    on_line_share_mass,
    p_exit,
    percentile_interval,
    ratio,
    ratio_without_exits,
    spearman,
    unimportant_moved,
)
from jsae.analysis.bootstrap import RankIndex, token_counts, token_resample
from jsae.analysis.statistics import ratio_of_means, token_ids
from jsae.errors import InputError
from jsae.stats import Tolerance, importance_ratio, summarize
from jsae.table import split


def hand_table() -> pd.DataFrame:
    """Six connections on three tokens; s = 1, so predicted = −J. The expected numbers in
    the tests below are worked out by hand from these rows."""
    return pd.DataFrame(
        {
            "position": [0, 0, 1, 1, 2, 2],
            "jacobian": [0.5, 0.02, 0.3, 0.005, -0.2, 0.001],
            "predicted": [-0.5, -0.02, -0.3, -0.005, 0.2, -0.001],
            "diff": [-0.5, -0.3, -0.05, 0.0, 0.2, -0.02],
            "exited": [False, True, False, False, False, True],
        }
    )


def random_table(n_tokens=40, per_token=25, seed=0, ties=False) -> pd.DataFrame:
    """A table where |diff| follows |J| loosely, with exits, on ``n_tokens`` tokens
    (rounded values when ``ties``, so ranks tie)."""
    rng = np.random.default_rng(seed)
    n = n_tokens * per_token
    jacobian = rng.standard_normal(n) * np.exp(rng.normal(-3, 1.5, n))
    exited = rng.random(n) < 0.1
    diff = -jacobian * 2 + rng.normal(0, 0.05, n)
    diff[exited] = -rng.random(exited.sum())
    if ties:
        jacobian, diff = np.round(jacobian, 2), np.round(diff, 1)
    return pd.DataFrame(
        {
            "position": np.repeat(np.arange(n_tokens), per_token) + 3,
            "jacobian": jacobian,
            "predicted": -2 * jacobian,
            "diff": diff,
            "exited": exited,
        }
    )


def brute_force_auc(score, label):
    pos, neg = score[label], score[~label]
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def test_hand_checked_numbers():
    t = hand_table()
    # moved (|diff| > 0.1): rows 0, 1, 4 (|J| .5, .02, .2) against 2, 3, 5 (.3, .005, .001):
    # 3 + 2 + 2 of the 9 pairs are ordered right.
    assert auc(t, 0.1) == pytest.approx(7 / 9)
    total = 1.07
    assert capture_at(t, 2 / 6) == pytest.approx((0.5 + 0.05) / total)  # |J| .5 and .3
    assert mass_capture(t, [2 / 6])["oracle"].iloc[0] == pytest.approx(0.8 / total)
    # within 0.01 + 0.1·|−s·J| of −s·J: rows 0, 3 and 4
    assert on_line_share_count(t) == pytest.approx(0.5)
    assert on_line_share_mass(t) == pytest.approx(0.7 / total)
    assert p_exit(t) == pytest.approx(2 / 6)
    assert exit_mass_share(t) == pytest.approx(0.32 / total)
    # at ε = 0.01 rows 3 and 5 are unimportant; all their movement (0.02) is row 5's exit
    assert exit_share_unimportant(t, 0.01) == pytest.approx(1.0)
    assert ratio(t, 0.01) == pytest.approx((1.05 / 4) / (0.02 / 2))
    # without exits: important rows 0, 2, 4 (0.75 / 3) over row 3 alone, which did not move
    assert ratio_without_exits(t, 0.01) == math.inf
    moved = unimportant_moved(t, 0.01, 0.1)
    assert (moved.moved, moved.connections, moved.share) == (0, 2, 0.0)
    assert moved.upper == pytest.approx(1 - 0.05 ** (1 / 2))


def test_auc_and_spearman_against_brute_force_and_numpy_ranks():
    t = random_table(seed=1)
    abs_j, abs_d = t["jacobian"].abs().to_numpy(), t["diff"].abs().to_numpy()
    assert auc(t, 0.1) == pytest.approx(brute_force_auc(abs_j, abs_d > 0.1))
    rank = lambda x: np.argsort(np.argsort(x)).astype(float)  # noqa: E731 (no ties here)
    assert spearman(t) == pytest.approx(np.corrcoef(rank(abs_j), rank(abs_d))[0, 1])
    tied = random_table(seed=1, ties=True)
    abs_j, abs_d = tied["jacobian"].abs().to_numpy(), tied["diff"].abs().to_numpy()
    assert auc(tied, 0.1) == pytest.approx(brute_force_auc(abs_j, abs_d > 0.1))


def test_mass_capture_against_a_sort():
    t = random_table(n_tokens=10, per_token=10, seed=2)
    abs_j, abs_d = t["jacobian"].abs().to_numpy(), t["diff"].abs().to_numpy()
    n = len(t)
    fractions = [k / n for k in (0, 1, 7, 20, 55, 100)]
    curve = mass_capture(t, fractions)
    by_j = sorted(range(n), key=lambda i: -abs_j[i])
    by_d = sorted(abs_d, reverse=True)
    for row, k in zip(curve.itertuples(), (0, 1, 7, 20, 55, 100), strict=True):
        assert row.by_jacobian == pytest.approx(sum(abs_d[i] for i in by_j[:k]) / abs_d.sum())
        assert row.oracle == pytest.approx(sum(by_d[:k]) / abs_d.sum())
    assert curve["by_jacobian"].iloc[-1] == pytest.approx(1.0)
    assert (curve["oracle"] >= curve["by_jacobian"] - 1e-12).all()


def test_mass_capture_ties_are_the_average_over_tie_orders():
    t = pd.DataFrame({"jacobian": [1.0, 1.0, 1.0, 0.5], "diff": [3.0, 0.0, 1.0, 2.0]})
    tied = [0, 1, 2]
    for k in (1, 2, 3):
        tops = [sum(t["diff"][list(order[:k])]) for order in itertools.permutations(tied)]
        assert capture_at(t, k / 4) == pytest.approx(np.mean(tops) / 6)
    # between whole numbers of connections the curve is linear
    a, b = capture_at(t, 0.25), capture_at(t, 0.5)
    assert capture_at(t, 0.3) == pytest.approx(a + 0.2 * (b - a))


def test_ratio_is_importance_ratio_of_the_split_including_float32_boundaries():
    t = random_table(seed=3)
    for eps in (0.001, 0.01, 0.1):
        assert ratio(t, eps) == pytest.approx(importance_ratio(summarize(split(t, eps))))
        kept = t[~t["exited"]]
        assert ratio_without_exits(t, eps) == pytest.approx(
            importance_ratio(summarize(split(kept, eps)))
        )
    # float32(0.1) rounds up: split (float32 compare) calls |J| = float32(0.1) unimportant
    f32 = pd.DataFrame({"jacobian": np.float32([0.1, 0.5, 0.01]), "diff": [1.0, 4.0, 2.0]})
    f32["predicted"] = 0.0
    assert not split(f32, 0.1)["important"].iloc[0]
    assert ratio(f32, 0.1) == pytest.approx(4.0 / 1.5)


def test_ratio_of_means_follows_importance_ratio():
    cases = [(2.0, 1.0), (1.0, 0.0), (0.0, 0.0), (math.nan, 1.0), (1.0, math.nan), (0.0, 2.0)]
    for imp, unimp in cases:
        summary = pd.DataFrame({"mean_abs_diff": [imp, unimp]}, index=["important", "unimportant"])
        expected = importance_ratio(summary)
        got = ratio_of_means(imp, unimp)
        assert (math.isnan(got) and math.isnan(expected)) or got == expected
    vector = ratio_of_means(np.array([c[0] for c in cases]), np.array([c[1] for c in cases]))
    np.testing.assert_array_equal(vector, [2.0, math.inf, math.nan, math.nan, math.nan, 0.0])


@pytest.mark.parametrize("k, n", [(0, 1), (0, 50), (3, 20), (19, 20), (20, 20), (7, 1000)])
def test_clopper_pearson_upper_bound_by_formula(k, n):
    expected = 1.0 if k == n else beta.ppf(0.95, k + 1, n - k)
    assert clopper_pearson_upper(k, n, 0.95) == pytest.approx(expected, rel=1e-9)
    if k < n:
        assert clopper_pearson_upper(k, n, 0.99) == pytest.approx(beta.ppf(0.99, k + 1, n - k))


def test_on_line_uses_the_tolerance():
    t = hand_table()
    loose = Tolerance(atol=1.0, rtol=0.0)
    assert on_line_share_count(t, loose) == 1.0
    assert on_line_share_mass(t, loose) == 1.0
    expected = Tolerance().within(t["diff"], t["predicted"])
    assert on_line_share_count(t) == pytest.approx(expected.mean())


def test_midranks_are_scipys_ranks_of_the_repeated_table():
    rng = np.random.default_rng(4)
    score = np.round(rng.random(30), 1)  # many ties
    index = RankIndex.of(score)
    np.testing.assert_allclose(index.midranks(np.ones(30)), rankdata(score))
    weights = rng.integers(0, 4, 30).astype(float)
    repeated = np.repeat(score, weights.astype(int))
    ranks = rankdata(repeated)
    first_copy = np.concatenate([[0], np.cumsum(weights.astype(int))[:-1]])
    present = weights > 0
    np.testing.assert_allclose(index.midranks(weights)[present], ranks[first_copy[present]])
    unique = RankIndex.of(rng.random(30))
    assert unique.run_start is None
    np.testing.assert_allclose(unique.midranks(np.ones(30)), rankdata(unique.order.argsort()))


def test_token_resample_is_reproducible_and_counts_match():
    a, b = token_resample(7, 5, seed=3), token_resample(7, 5, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, token_resample(7, 5, seed=4))
    counts = token_counts(a, 7)
    assert counts.shape == (5, 7) and (counts.sum(axis=1) == 7).all()
    for row, draws in zip(counts, a, strict=True):
        np.testing.assert_array_equal(row, np.bincount(draws, minlength=7))


@pytest.mark.parametrize("ties", [False, True])
def test_each_replicate_is_the_statistic_of_the_resampled_tokens(ties):
    t = random_table(n_tokens=12, per_token=15, seed=5, ties=ties)
    reps = bootstrap_replicates(t, 0.01, 0.1, n_bootstrap=6, seed=9)
    tokens = np.unique(t["position"])
    for b, draws in enumerate(token_resample(len(tokens), 6, 9)):
        resampled = pd.concat([t[t["position"] == tokens[i]] for i in draws])
        abs_j, abs_d = resampled["jacobian"].abs(), resampled["diff"].abs()
        expected = {
            "auc": roc_auc_score(abs_d > 0.1, abs_j),
            "spearman": spearmanr(abs_j, abs_d).statistic,
            "ratio": importance_ratio(summarize(split(resampled, 0.01))),
            "ratio_without_exits": importance_ratio(
                summarize(split(resampled[~resampled["exited"]], 0.01))
            ),
            "exit_mass_share": abs_d[resampled["exited"]].sum() / abs_d.sum(),
        }
        for name in BOOTSTRAPPED:
            assert reps[name].iloc[b] == pytest.approx(expected[name], rel=1e-9), name


def test_tokens_of_a_corpus_table_are_document_window_position():
    # two documents, each with positions 0 and 1: four tokens, not two
    t = random_table(n_tokens=4, per_token=30, seed=10)
    t["position"] = np.repeat([0, 1, 0, 1], 30)
    t["document"] = pd.Categorical(np.repeat(["b", "b", "a", "a"], 30))
    t["window"] = 0
    ids = token_ids(t)
    np.testing.assert_array_equal(np.unique(ids), np.arange(4))
    assert effect_statistics(t, 0.01, n_bootstrap=0).n_tokens == 4
    reps = bootstrap_replicates(t, 0.01, n_bootstrap=5, seed=2)
    keys = sorted(set(zip(t["document"], t["window"], t["position"], strict=True)))
    for b, draws in enumerate(token_resample(4, 5, 2)):
        parts = [
            t[(t["document"] == d) & (t["window"] == w) & (t["position"] == p)]
            for d, w, p in (keys[i] for i in draws)
        ]
        resampled = pd.concat(parts)
        assert reps["ratio"].iloc[b] == pytest.approx(ratio(resampled, 0.01))
        assert reps["auc"].iloc[b] == pytest.approx(
            roc_auc_score(resampled["diff"].abs() > 0.1, resampled["jacobian"].abs())
        )


def test_bootstrap_resamples_tokens_not_rows():
    # Ten tokens whose 50 connections are identical: the tokens are what varies, so a token
    # bootstrap must be much wider than treating the 500 rows as independent.
    rng = np.random.default_rng(6)
    per_token = 50
    exited = np.repeat(rng.random(10) < 0.5, per_token)
    diff = np.repeat(rng.random(10), per_token)
    t = pd.DataFrame(
        {
            "position": np.repeat(np.arange(10), per_token),
            "jacobian": rng.random(500),
            "predicted": 0.0,
            "diff": diff,
            "exited": exited,
        }
    )
    by_token = bootstrap_replicates(t, 0.5, n_bootstrap=300, seed=0)["exit_mass_share"]
    by_row = bootstrap_replicates(t.assign(position=np.arange(500)), 0.5, n_bootstrap=300)[
        "exit_mass_share"
    ]
    assert by_token.std() > 4 * by_row.std()


def test_bootstrap_is_reproducible_and_covers_the_point_estimate():
    t = random_table(n_tokens=60, per_token=20, seed=7)
    a = effect_statistics(t, 0.01, n_bootstrap=100, seed=1)
    b = effect_statistics(t, 0.01, n_bootstrap=100, seed=1)
    c = effect_statistics(t, 0.01, n_bootstrap=100, seed=2)
    assert a == b and a.summary().equals(b.summary())
    assert a.ratio_ci != c.ratio_ci
    for name in BOOTSTRAPPED:
        low, high = getattr(a, f"{name}_ci")
        assert low < getattr(a, name) < high, name


def test_percentile_interval_drops_nan_and_keeps_inf():
    values = np.array([np.nan, 1.0, 2.0, 3.0, np.inf, np.inf])
    assert percentile_interval(values, 0.5) == (2.0, math.inf)  # of 1, 2, 3, inf, inf
    assert percentile_interval(np.arange(101.0), 0.9) == (5.0, 95.0)
    assert all(math.isnan(x) for x in percentile_interval(np.array([np.nan]), 0.95))


def test_effect_statistics_gathers_the_point_estimates():
    t = random_table(seed=8)
    s = effect_statistics(t, 0.01, tau=0.2, n_bootstrap=0)
    assert isinstance(s, EffectStatistics)
    assert (s.n_connections, s.n_tokens) == (1000, 40)
    assert s.auc == auc(t, 0.2) and s.spearman == spearman(t)
    assert s.ratio == ratio(t, 0.01) and s.exit_mass_share == exit_mass_share(t)
    assert s.capture == pytest.approx(capture_at(t, 0.2))
    assert s.unimportant == unimportant_moved(t, 0.01, 0.2)
    assert s.fraction_important == pytest.approx((t["jacobian"].abs() > 0.01).mean())
    assert all(math.isnan(x) for x in s.auc_ci + s.ratio_ci)
    summary = s.summary()
    assert list(summary.columns) == ["statistic", "value", "ci_low", "ci_high", "description"]
    assert summary["statistic"].is_unique and (summary["description"].str.len() > 20).all()
    values = summary.set_index("statistic")["value"]
    assert values["auc"] == s.auc and values["unimportant_moved_upper"] == s.unimportant.upper
    assert "0.2" in summary.set_index("statistic").loc["auc", "description"]


def test_edge_cases_give_nan_not_errors():
    empty = hand_table().iloc[:0]
    s = effect_statistics(empty, 0.01)
    assert s.n_connections == 0 and s.n_tokens == 0
    for value in (s.auc, s.spearman, s.capture, s.ratio, s.p_exit, s.unimportant.upper):
        assert math.isnan(value)
    assert len(s.summary()) > 10
    # every connection important: no unimportant side
    t = hand_table()
    s = effect_statistics(t, 0.0001, n_bootstrap=20)
    assert math.isnan(s.ratio) and math.isnan(s.unimportant.share)
    assert math.isnan(s.unimportant.upper) and math.isnan(s.exit_share_unimportant)
    # no exits at all, and no exited column
    calm = t.assign(exited=False)
    assert exit_mass_share(calm) == 0.0 and ratio_without_exits(calm, 0.01) == ratio(calm, 0.01)
    bare = t.drop(columns="exited")
    s = effect_statistics(bare, 0.01, n_bootstrap=20)
    assert math.isnan(s.p_exit) and math.isnan(s.exit_mass_share)
    assert math.isnan(s.ratio_without_exits) and all(map(math.isnan, s.exit_mass_share_ci))
    assert not math.isnan(s.ratio)
    # one class only, constant inputs, nothing moved
    still = t.assign(diff=0.0)
    assert math.isnan(auc(still)) and math.isnan(spearman(still))
    assert math.isnan(capture_at(still)) and math.isnan(on_line_share_mass(still))
    s = effect_statistics(still, 0.01, n_bootstrap=20)
    assert math.isnan(s.auc) and all(map(math.isnan, s.auc_ci + s.spearman_ci))


def test_bad_arguments_are_input_errors():
    t = hand_table()
    with pytest.raises(InputError):
        effect_statistics(t, 0.0)
    with pytest.raises(InputError):
        effect_statistics(t, 0.01, tau=-1)
    with pytest.raises(InputError):
        effect_statistics(t, 0.01, n_bootstrap=-5)
    with pytest.raises(InputError):
        effect_statistics(t, 0.01, confidence=1.0)
    with pytest.raises(InputError, match="jacobian"):
        effect_statistics(t.drop(columns="jacobian"), 0.01)
    with pytest.raises(InputError):
        mass_capture(t, [1.5])
