"""The display settings in the URL (``jsae.explore.display``) and what the pages say about
their settings (``jsae.explore.settings_note``), checked against values written out here."""

import pytest

from jsae import explore
from jsae.analysis import GOOD_AUC, STRONG_RATIO, WEAK_RATIO
from jsae.stats import Tolerance

NON_DEFAULT = {
    "tol_atol": "0.05",
    "tol_rtol": "0.25",
    "hist_layout": "facet",
    "hist_y": "share",
    "hist_log": "0",
    "hist_bins": "150",
    "effect_bins": "40",
    "miss_n": "100",
    "cmp_log": "1",
    "joint_value": "share",
    "joint_layout": "facet",
    "joint_log": "0",
    "joint_curve": "mean_share",
    "cmp_joint_curve": "mean_share",
}


def test_every_display_setting_round_trips_through_the_url():
    assert set(NON_DEFAULT) == set(explore.DISPLAY_SETTINGS)  # a new setting needs a case
    view, warnings = explore.parse_query_params(NON_DEFAULT, prompts={})
    assert warnings == []
    params = explore.to_query_params(view)
    assert {k: params[k] for k in NON_DEFAULT} == NON_DEFAULT
    values = explore.display_values(dict(view.display))
    assert values["hist_bins"] == 150 and values["hist_log"] is False
    assert values["cmp_log"] is True and values["tol_atol"] == 0.05
    assert explore.display_tolerance(values) == Tolerance(atol=0.05, rtol=0.25)


def test_defaults_stay_out_of_the_link_and_are_the_packages():
    view, warnings = explore.parse_query_params({}, prompts={})
    assert warnings == [] and view.display == ()
    values = explore.display_values({})
    assert explore.display_tolerance(values) == Tolerance()  # stats' one definition
    assert explore.display_params(values) == {}
    defaults = {"hist_bins": 60, "effect_bins": 80, "miss_n": 20, "hist_log": True}
    assert {k: values[k] for k in defaults} == defaults


@pytest.mark.parametrize(
    ("name", "raw", "said"),
    [
        ("hist_bins", "7", "it must be one of 20, 40, 60, 100, 150, 200; using 60"),
        ("hist_log", "yes", "it must be one of 1, 0; using 1"),
        ("tol_atol", "-1", "a finite number of at least 0; using 0.01"),
        ("tol_rtol", "nan", "a finite number of at least 0; using 0.1"),
        ("joint_value", "x", "one of abs_diff, share"),
        ("joint_curve", "area", "one of mean_abs_diff, mean_share; using mean_abs_diff"),
        (
            "cmp_joint_curve",
            "kl",
            "one of relative_abs_diff, mean_abs_diff, mean_share; using relative_abs_diff",
        ),
    ],
)
def test_a_bad_display_value_warns_and_keeps_the_default(name, raw, said):
    view, warnings = explore.parse_query_params({name: raw}, prompts={})
    assert view.display == ()
    assert len(warnings) == 1 and f"Ignored {name}={raw!r}" in warnings[0]
    assert said in warnings[0]


def test_the_verdict_rule_states_the_verdicts_thresholds():
    assert (STRONG_RATIO, WEAK_RATIO, GOOD_AUC) == (10.0, 2.0, 0.9)  # the numbers
    rule = explore.verdict_rule()
    assert "**yes** when important connections move at least 10× more" in rule
    assert "AUC ≥ 0.9" in rule and "**partly** from 2×" in rule


def test_the_tolerance_rule_states_its_numbers():
    rule = explore.tolerance_rule(Tolerance(atol=0.05, rtol=0.25))
    assert "atol + rtol·|−s·J| with atol = 0.05 and rtol = 0.25" in rule


def key(mode="unit", scale=1.0):
    return explore.RunKey("demo", None, 3, "jsae", mode, scale, "text")


def test_the_research_note_says_what_it_reproduces_and_where_it_departs():
    same = explore.research_note(key(), 0.01)
    assert "Reproduces the notebook's ε = 0.01, a unit step s = 1, every k×k connection" in same
    assert "Departs" not in same
    assert "unimportant 0.015 vs important 0.099 mean |diff| at ε = 0.01 (ratio 6.6)" in same
    other = explore.research_note(key("scale", 0.5), 0.1, sampler="random")
    assert "Reproduces" not in other
    assert "ε = 0.1 (the notebook's: 0.01)" in other
    assert "s = 0.5 (the notebook's: a unit step s = 1)" in other
    assert "sampled by 'random'" in other
    zero = explore.research_note(key("zero"), 0.01)
    assert "Reproduces the notebook's ε = 0.01, every k×k" in zero and "s = aᵢ (zero)" in zero


def test_the_pair_sampler_round_trips_through_the_url():
    view, warnings = explore.parse_query_params({"pairs": "random", "seed": "7"}, prompts={})
    assert warnings == [] and (view.pairs, view.seed) == ("random", 7)
    params = explore.to_query_params(view)
    assert params["pairs"] == "random" and params["seed"] == "7"
    ranked, _ = explore.parse_query_params({"pairs": "equal_rank", "seed": "7"}, prompts={})
    assert "seed" not in explore.to_query_params(ranked)  # only random draws
    assert "pairs" not in explore.to_query_params(explore.ViewState())
    _, warnings = explore.parse_query_params({"pairs": "some", "seed": "-2"}, prompts={})
    assert (
        "Ignored pairs='some' from the URL: it must be one of all, equal_rank, random." in warnings
    )
    assert "Ignored seed='-2' from the URL: it must be ≥ 0." in warnings
