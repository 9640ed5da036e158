"""The verdict: each rule on a table built to meet it, the perverse case named as such, and
``analyse`` end to end on a tiny pair."""

import dataclasses
import math

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
    PairHealth,
    analyse,
    effect_statistics,
    pair_health,
    verdict,
)
from jsae.analysis.faithfulness import JointStatistics
from jsae.analysis.statistics import UnimportantMoved
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


def hand_stats(**changes):
    """Statistics with hand-set values (a real table's, then each number replaced), so that a
    rule's threshold can be met exactly: 0.5, 0.9, 2 and 10 are binary-exact or compared as
    written."""
    rng = np.random.default_rng(4)
    jac = np.r_[rng.uniform(0.02, 0.1, 20), rng.uniform(0.0, 0.009, 20)]
    base = stats_of(table(jac, np.full(40, 0.1)), n_bootstrap=0)
    values = {
        "n_connections": 40,
        "fraction_important": 0.25,
        "auc": 0.95,
        "auc_ci": (0.9, 0.99),
        "spearman": 0.8,
        "confidence": 0.95,
        "exit_share_unimportant": 0.25,
        "ratio": 3.0,
        "ratio_ci": (2.5, 3.5),
        "ratio_without_exits": 2.0,
        "ratio_without_exits_ci": (math.nan, math.nan),
    }
    return dataclasses.replace(base, **(values | changes))


def health_of(output_cv=0.5, margin_relative=1.0, warnings=()):
    return PairHealth(
        tokens=10,
        output_cv=output_cv,
        input_cv=0.5,
        ev_out=0.9,
        binary_ev_out=0.5,
        binary_share=0.1,
        margin_median=1.0,
        margin_q10=0.5,
        margin_relative=margin_relative,
        near_displacement=0.0,
        unfired_in=0.0,
        unfired_out=0.0,
        warnings=warnings,
    )


@pytest.mark.parametrize(
    ("changes", "level", "sentence"),
    [
        (  # rule 3 at its thresholds: ratio exactly 10, AUC exactly 0.9, exits just below half
            {"ratio": 10.0, "auc": 0.9, "exit_share_unimportant": 0.49},
            "yes",
            "Yes: unimportant connections barely move (10× less than important ones), and |J| "
            "ranks the connections that moved well (AUC 0.90).",
        ),
        (
            {"ratio": math.inf, "auc": 0.99},
            "yes",
            "Yes: unimportant connections barely move at all, and |J| ranks the connections "
            "that moved well (AUC 0.99).",
        ),
        (  # rule 4 at its threshold: ratio exactly 2
            {"ratio": 2.0},
            "partly",
            "Partly: unimportant connections move 2.0× less than important ones at ε = 0.01, "
            "and |J| ranks the connections that moved with AUC 0.95.",
        ),
        (  # AUC just below 0.9 and ratio 12: not a yes
            {"ratio": 12.0, "auc": 0.89},
            "partly",
            "Partly: unimportant connections move 12.0× less than important ones at ε = 0.01, "
            "and |J| ranks the connections that moved with AUC 0.89.",
        ),
        (
            {"ratio": 1.5},
            "no",
            "No: unimportant connections move about as much as important ones (ratio 1.5 at "
            "ε = 0.01).",
        ),
        (  # rule 2 at its threshold: exits exactly half the unimportant movement, AUC poor
            {"exit_share_unimportant": 0.5, "auc": 0.6, "ratio": 20.0},
            "no",
            "No: only 25% of connections have |J| > ε = 0.01, but the Jacobian does not locate "
            "where the movement happens. 50% of the unimportant connections' movement is top-k "
            "swaps (output features pushed out of the top k), which no derivative sees, and |J| "
            "ranks the connections that moved with AUC 0.60.",
        ),
        (  # rule 4 at its thresholds: exits exactly half, AUC 0.9, ratio without exits 10
            {"exit_share_unimportant": 0.5, "auc": 0.9, "ratio_without_exits": 10.0},
            "yes",
            "Yes, the Jacobian's sparsity is sound: without top-k exits the unimportant "
            "connections move 10× less than important ones, and |J| ranks the connections that "
            "moved with AUC 0.90. What moves them (50% of their movement) is top-k competition: "
            "an output feature pushed out of the top k by another one the perturbation raised, "
            "a selection by the output SAE that no derivative of the feature itself sees.",
        ),
        (
            {"exit_share_unimportant": 0.9, "ratio_without_exits": math.inf},
            "yes",
            "Yes, the Jacobian's sparsity is sound: without top-k exits the unimportant "
            "connections do not move at all, and |J| ranks the connections that moved with AUC "
            "0.95. What moves them (90% of their movement) is top-k competition: an output "
            "feature pushed out of the top k by another one the perturbation raised, a "
            "selection by the output SAE that no derivative of the feature itself sees.",
        ),
        (  # one important connection out of one: every connection is important
            {"n_connections": 1, "fraction_important": 1.0},
            "undetermined",
            "Every connection has |J| > ε = 0.01, so there is nothing to compare: raise ε.",
        ),
        (
            {"n_connections": 0, "fraction_important": math.nan},
            "undetermined",
            "No connection has |J| > ε = 0.01, so there is nothing to compare: lower ε.",
        ),
    ],
)
def test_each_rule_at_its_threshold_gives_its_sentence(changes, level, sentence):
    """Hand-set statistics put on each documented boundary (ratio ≥ 10, ratio ≥ 2, AUC ≥ 0.9,
    exits ≥ 0.5): the level, the whole sentence, the ratio it reports and the reasons."""
    if math.isnan(changes.get("fraction_important", 0.0)):
        changes = changes | {"fraction_important": 0.0}
    stats = hand_stats(**changes)
    found = verdict(stats)
    assert (found.level, found.sentence) == (level, sentence)
    assert found.perverse is (level == "no" and "top-k swaps" in sentence)
    assert found.ratio == stats.ratio
    assert found.dense is (stats.fraction_important >= 0.5)
    assert found.reasons[found.dense].startswith("Ratio of mean |diff|, important over")
    assert found.reasons == verdict(stats, health_of()).reasons  # no warnings: the same


def test_dense_from_half_the_connections_whatever_the_level():
    """Exactly half the connections important is dense (the lead heads the sentence, a reason
    says why); just under half is not."""
    dense = verdict(hand_stats(fraction_important=0.5))
    assert dense.level == "partly" and dense.dense is True
    assert dense.headline == f"Dense Jacobian. {dense.sentence}"
    assert dense.reasons[0] == (
        "The Jacobian is dense: 50% of connections have |J| > ε = 0.01 (dense from 50%), so "
        "the split calls most connections important and says little about where the "
        "computation is."
    )
    everything = verdict(hand_stats(fraction_important=1.0))
    assert everything.level == "undetermined" and everything.dense is True
    sparse = verdict(hand_stats(fraction_important=0.49))
    assert sparse.dense is False and sparse.headline == sparse.sentence
    assert sparse.reasons[0].startswith("Ratio of mean |diff|")
    dense_exits = verdict(
        hand_stats(fraction_important=0.5, exit_share_unimportant=0.9, ratio_without_exits=20.0)
    )
    assert dense_exits.level == "partly", "a dense Jacobian's exits are not competition"
    perverse = verdict(hand_stats(fraction_important=0.5, exit_share_unimportant=0.9, auc=0.5))
    assert (
        perverse.perverse
        and perverse.dense
        and perverse.lead == "Sparse Jacobian without sparse computation"
    )


def test_a_flat_code_makes_exit_dominated_movement_perverse_even_when_j_ranks_it():
    """Rule 2's other arm: exits dominate, |J| ranks well (AUC 0.95), but the code is flat;
    the cause is named, and the health warnings join the reasons."""
    stats = hand_stats(exit_share_unimportant=0.8, ratio=20.0)
    without_health = verdict(stats)
    assert without_health.level == "partly" and not without_health.perverse, "exits bar a yes"
    health = health_of(output_cv=0.01, warnings=("The output code is flat.",))
    found = verdict(stats, health)
    assert found.level == "no" and found.perverse is True and found.ratio == 20.0
    assert found.sentence.endswith(
        "with AUC 0.95. The output code is nearly binary (a token's active output features "
        "have almost equal activations, CV 0.01), so what it encodes is which features are "
        "selected, and small pushes swap them."
    )
    assert found.reasons[-1] == "The output code is flat."
    assert found.reasons[:-1] == verdict(stats).reasons


def test_the_reasons_read_the_numbers_and_intervals():
    """The first reason as a reader sees it: the ratio with its interval, the ratio without
    exits without one (its interval is NaN), and the intervals' confidence in percent."""
    found = verdict(hand_stats(confidence=0.95, ratio=3.0, ratio_ci=(2.5, 3.5)))
    assert found.reasons[0] == (
        "Ratio of mean |diff|, important over unimportant at ε = 0.01: 3 (2.5–3.5); without "
        "exits 2 (95% intervals over tokens)."
    )
    moved = verdict(hand_stats(tau=0.001, unimportant=UnimportantMoved(3, 20, 0.15, 0.3, 0.95)))
    assert moved.reasons[-1] == (
        "15.0% of the unimportant connections moved by more than 0.001 (at most 30.0%, 95% bound)."
    )
    half_known = verdict(hand_stats(ratio_ci=(2.5, math.nan)))
    assert half_known.reasons[0].startswith("Ratio of mean |diff|, important over unimportant")
    assert ": 3; without exits 2 (" in half_known.reasons[0]


def test_the_joint_result_joins_each_level_as_documented():
    """Rule 6 on hand-set statistics: a no gains the joint sentence and keeps its level and
    flags; an undetermined verdict is left as it is; a yes overruled keeps its ratio and
    density; the two joint reasons read the sets and the score (no interval when NaN)."""
    no = hand_stats(ratio=1.5)
    found = verdict(no, joint=_joint(0.3))
    assert found.level == "no" and found.perverse is False and found.ratio == 1.5
    assert found.sentence == (
        "No: unimportant connections move about as much as important ones (ratio 1.5 at "
        "ε = 0.01). Removed together, an output feature's unimportant inputs move it by 30% "
        "of its activation."
    )
    assert found.reasons[:-2] == verdict(no).reasons
    assert found.reasons[-2:] == (
        "Removed together, an output feature's unimportant inputs (about 12 of 16) move it by "
        "30% of its activation (|diff| 0.6; it leaves the top k 40% of the time); as many "
        "random inputs by 50%; its important inputs by 50%.",
        "Faithfulness score of the |J| order 0.40 [0.10, 0.30]: 0 is no better than removing "
        "inputs at random, 1 as good as the single-connection oracle.",
    )
    no_interval = verdict(no, joint=_joint(0.3, score_ci=(0.1, math.nan)))
    assert no_interval.reasons[-1].startswith("Faithfulness score of the |J| order 0.40: 0 is")
    undetermined = hand_stats(n_connections=1, fraction_important=1.0)
    assert verdict(undetermined, joint=_joint(0.9)) == verdict(undetermined)
    dense_yes = hand_stats(ratio=12.0, fraction_important=0.6)
    assert verdict(dense_yes).level == "yes" and verdict(dense_yes).dense is True
    overruled = verdict(dense_yes, joint=_joint(0.3))
    assert overruled.level == "no" and overruled.perverse is True
    assert overruled.ratio == 12.0 and overruled.dense is True
    assert overruled.sentence == (
        "No: each small connection alone barely matters (unimportant connections move 12.0× "
        "less than important ones), but together, an output feature's unimportant inputs move "
        "it by 30% of its activation, so a sparse Jacobian does not mean sparse computation "
        "here."
    )
    dense_no = verdict(hand_stats(ratio=1.5, fraction_important=0.6))
    assert dense_no.level == "no" and dense_no.dense is True
