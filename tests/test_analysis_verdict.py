"""The verdict: each rule on a table built to meet it, the perverse case named as such, and
``analyse`` end to end on a tiny pair."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from jsae.ablation import ablate
from jsae.analysis import (
    DENSE_FRACTION,
    DENSE_LEAD,
    EXIT_DOMINATED,
    JOINT_MOVES,
    STRONG_RATIO,
    analyse,
    effect_statistics,
    pair_health,
    verdict,
)
from jsae.analysis.faithfulness import JointStatistics
from jsae.explore import verdict_box
from jsae.prompt import mlp_inputs
from jsae.sandwich import Sandwich
from tests.helpers import tiny_model, tiny_pair

EPS = 0.01


def table(jac, diff, exited=None, tokens=20):
    """A synthetic table: every row its own output feature, rows spread over ``tokens``."""
    jac, diff = np.asarray(jac, float), np.asarray(diff, float)
    n = len(jac)
    return pd.DataFrame(
        {
            "position": np.arange(n) % tokens + 1,
            "jacobian": jac,
            "predicted": -jac,
            "diff": diff,
            "exited": np.zeros(n, bool) if exited is None else np.asarray(exited, bool),
        }
    )


def stats_of(t, **kwargs):
    return effect_statistics(t, EPS, n_bootstrap=kwargs.pop("n_bootstrap", 50), **kwargs)


def test_yes_when_unimportant_barely_move_and_j_ranks_the_movement():
    rng = np.random.default_rng(0)
    big = rng.uniform(0.5, 1.0, 200)
    small = rng.uniform(0.0, 0.005, 200)
    t = table(np.r_[big, small], -np.r_[big, small] * 0.9)
    found = verdict(stats_of(t))
    assert found.level == "yes" and not found.perverse
    assert found.ratio >= STRONG_RATIO and found.sentence.startswith("Yes")


def test_perverse_when_exits_carry_the_unimportant_movement():
    """The bundled JSAE's case: a sparse Jacobian whose unimportant connections move by
    swapping output features out of the top k, which |J| does not see."""
    rng = np.random.default_rng(1)
    n_imp, n_unimp = 100, 400
    jac = np.r_[rng.uniform(0.02, 0.1, n_imp), rng.uniform(0.0, 0.009, n_unimp)]
    diff = np.r_[rng.uniform(0.05, 0.2, n_imp), rng.uniform(0.0, 0.004, n_unimp)]
    exited = np.zeros(n_imp + n_unimp, bool)
    exited[n_imp::8] = True  # 1 in 8 unimportant connections exit, losing a whole activation
    diff[exited] = -1.0
    t = table(jac, diff, exited)
    stats = stats_of(t)
    assert stats.exit_share_unimportant >= EXIT_DOMINATED
    found = verdict(stats)
    assert found.level == "no" and found.perverse
    assert found.headline.startswith("Sparse Jacobian without sparse computation. No:")
    assert (
        "top-k swaps" in found.sentence and f"{stats.exit_share_unimportant:.0%}" in found.sentence
    )
    assert any("Top-k exits carry" in r for r in found.reasons)


def test_partly_and_no_by_the_ratio_without_exits():
    rng = np.random.default_rng(2)
    jac = np.r_[rng.uniform(0.02, 0.1, 200), rng.uniform(0.0, 0.009, 200)]
    moves = np.r_[np.full(200, 0.3), np.full(200, 0.1)]  # ratio 3
    assert verdict(stats_of(table(jac, moves))).level == "partly"
    same = np.full(400, 0.2)  # ratio 1
    found = verdict(stats_of(table(jac, same)))
    assert found.level == "no" and not found.perverse and "about as much" in found.sentence


@pytest.mark.parametrize(("jac", "word"), [([0.001, 0.002], "lower ε"), ([0.5, 0.6], "raise ε")])
def test_undetermined_when_one_side_is_empty(jac, word):
    found = verdict(stats_of(table(jac, [0.1, 0.2], tokens=2), n_bootstrap=0))
    assert found.level == "undetermined" and word in found.sentence


def test_flat_code_is_named_as_the_cause():
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=32, k=4)
    x = mlp_inputs(model, model.to_tokens("The quick brown fox jumps.")[0], 1)
    health = dataclasses.replace(pair_health(Sandwich(model, pair), x), output_cv=0.01)
    assert health.flat
    rng = np.random.default_rng(1)
    jac = np.r_[rng.uniform(0.02, 0.1, 50), rng.uniform(0.0, 0.009, 200)]
    diff = np.r_[np.full(50, 0.1), np.full(200, 0.001)]
    exited = np.zeros(250, bool)
    exited[50::4] = True
    diff[exited] = -1.0
    found = verdict(stats_of(table(jac, diff, exited)), health)
    assert found.perverse and "nearly binary" in found.sentence and "CV 0.01" in found.sentence


def test_analyse_end_to_end_reads_one_result():
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=48, k=6)
    result = ablate(model, pair, "The quick brown fox jumps over the lazy dog.")
    found = analyse(model, pair, result, n_bootstrap=20)
    assert found.statistics.n_connections == len(result.table)
    assert found.statistics.n_tokens == result.n_tokens == found.health.tokens
    assert found.verdict == verdict(found.statistics, found.health)
    summary = found.summary()
    assert {"auc", "ratio_without_exits", "output_cv"} <= set(summary["statistic"])
    assert list(summary.columns) == ["statistic", "value", "ci_low", "ci_high", "description"]


def test_exits_alone_are_not_perverse_when_j_ranks_the_movement():
    """A plain pair's few unimportant connections also move mostly by exits, but |J| still
    ranks the movement well: partly, not a sparse Jacobian without sparse computation."""
    rng = np.random.default_rng(3)
    jac = np.r_[rng.uniform(0.02, 1.0, 900), rng.uniform(0.0, 0.009, 100)]
    diff = np.r_[jac[:900] * 0.8, np.full(100, 0.0005)]
    exited = np.zeros(1000, bool)
    exited[900:910] = True
    diff[exited] = -0.05  # small exits, below τ: they dominate the unimportant mass only
    stats = stats_of(table(jac, diff, exited))
    assert stats.exit_share_unimportant >= EXIT_DOMINATED and stats.auc >= 0.9
    found = verdict(stats)
    assert not found.perverse and found.level in ("partly", "yes")


def _joint(unimportant_share, important_share=0.5, score_ci=(0.1, 0.3)):
    """Joint statistics whose sets moved their output features by the given shares."""
    sets = pd.DataFrame(
        {
            "set": ["unimportant", "important", "random"],
            "pairs": [100, 100, 100],
            "mean_size": [12.0, 4.0, 12.0],
            "mean_abs_diff": [2 * unimportant_share, 2 * important_share, 1.0],
            "mean_share": [unimportant_share, important_share, 0.5],
            "exit_share": [0.4, 0.2, 0.4],
            "mean_abs_predicted": [0.1, 0.1, 0.1],
            "mean_abs_additive": [0.1, 0.1, 0.1],
            "mean_additivity_gap": [0.1, 0.1, 0.1],
        }
    )
    area = {"jacobian": 0.8, "reverse": 1.0, "oracle": 0.5, "random": 1.0}
    return JointStatistics(EPS, 16, 16, 100, 50, sets, pd.DataFrame(), area, score_ci)


def test_the_joint_result_overrules_a_yes_when_unimportant_inputs_add_up():
    rng = np.random.default_rng(0)
    big = rng.uniform(0.5, 1.0, 200)
    small = rng.uniform(0.0, 0.005, 200)
    stats = stats_of(table(np.r_[big, small], -np.r_[big, small] * 0.9))
    assert verdict(stats).level == "yes"
    adds_up = verdict(stats, joint=_joint(JOINT_MOVES + 0.1))
    assert adds_up.level == "no" and adds_up.perverse
    assert "each small connection alone barely matters" in adds_up.sentence
    assert f"{JOINT_MOVES + 0.1:.0%} of its activation" in adds_up.sentence
    # the score (0.4 = (1 - 0.8) / (1 - 0.5)) and its interval are among the reasons
    assert any(
        "Faithfulness score of the |J| order 0.40 [0.10, 0.30]" in r for r in adds_up.reasons
    )
    agrees = verdict(stats, joint=_joint(JOINT_MOVES - 0.1))
    assert agrees.level == "yes" and agrees.sentence == verdict(stats).sentence
    assert len(agrees.reasons) == len(verdict(stats).reasons) + 2
    at_threshold = verdict(stats, joint=_joint(JOINT_MOVES))
    assert at_threshold.level == "no", "the threshold itself counts as adding up"


def competition_table(n_imp, n_unimp, exit_every=20):
    """Important connections that move with J; unimportant ones that do not move at all
    except for 1 in ``exit_every``, whose output feature exits (loses a whole activation)."""
    rng = np.random.default_rng(4)
    jac = np.r_[rng.uniform(0.5, 1.0, n_imp), rng.uniform(0.0, 0.005, n_unimp)]
    diff = np.r_[-0.9 * jac[:n_imp], np.zeros(n_unimp)]
    exited = np.zeros(n_imp + n_unimp, bool)
    exited[n_imp::exit_every] = True
    diff[exited] = -1.0
    return table(jac, diff, exited)


def test_yes_sound_when_only_competition_moves_the_unimportant_connections():
    """The planted true pair's case: off the edges nothing moves but top-k exits; the exits
    dominate the unimportant movement, yet without them the unimportant connections do not
    move at all and |J| ranks the movement well: sound, the exits named as competition."""
    stats = stats_of(competition_table(200, 400))
    assert stats.exit_share_unimportant == 1.0 and stats.ratio_without_exits == np.inf
    assert stats.auc >= 0.9 and stats.fraction_important < 0.5
    found = verdict(stats)
    assert found.level == "yes" and not found.perverse and not found.dense
    assert found.sentence.startswith("Yes, the Jacobian's sparsity is sound")
    assert "do not move at all" in found.sentence and "top-k competition" in found.sentence
    assert found.headline == found.sentence


def test_dense_jacobian_is_said_first_and_never_sound():
    """The same movement with most connections important (the planted rotated pair, the
    bundle's plain pairs): dense, so not called sound, and every face leads with it."""
    stats = stats_of(competition_table(700, 300))
    assert stats.fraction_important >= DENSE_FRACTION and stats.ratio_without_exits == np.inf
    found = verdict(stats)
    assert found.dense and found.level == "partly"
    assert found.headline == f"{DENSE_LEAD}. {found.sentence}"
    assert found.reasons[0].startswith("The Jacobian is dense: 70% of connections")
    assert verdict_box(found) == ("info", f"**{DENSE_LEAD}.** {found.sentence}")
    sparse = verdict(stats_of(competition_table(200, 400)))
    assert verdict_box(sparse) == ("success", sparse.sentence)
    overruled = verdict(stats, joint=_joint(JOINT_MOVES + 0.1))  # the joint rule keeps it
    assert overruled.level == "no" and overruled.perverse and overruled.dense
