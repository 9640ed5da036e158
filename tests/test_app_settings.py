"""The page states its settings and a link carries every one: the display settings from a
URL reach their widgets and stay in the URL, the summary's "within tolerance" uses the
link's tolerance (checked against the rule computed here), and the verdict's thresholds,
the tolerance and the research settings are written under the results."""

import hashlib
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from jsae import explore
from jsae.sampler import PairSampler, sample_pairs
from jsae.stats import SUMMARY_LABELS
from tests.test_app import (  # noqa: F401
    APP,
    PAGES,
    TIMEOUT,
    expected_analysis,
    expected_table,
    loaded,
    no_problems,
    run,
    tiny_source,
)
from tests.test_display import NON_DEFAULT

__all__ = ["loaded", "tiny_source"]


@pytest.fixture
def app(tiny_source, monkeypatch):  # noqa: F811
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, tiny_source)
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def within_share(table: pd.DataFrame, atol: float, rtol: float) -> float:
    """The share of connections with |diff − predicted| ≤ atol + rtol·|predicted|."""
    diff, predicted = table["diff"].to_numpy(), table["predicted"].to_numpy()
    return float(np.mean(np.abs(diff - predicted) <= atol + rtol * np.abs(predicted)))


def test_every_display_setting_comes_from_the_link_and_stays_in_it(app, loaded, tiny_source):  # noqa: F811
    app.query_params.update({**NON_DEFAULT, "run": "1"})
    at = app.run()
    no_problems(at)
    values = explore.display_values(NON_DEFAULT)
    for name, value in values.items():
        assert at.session_state[name] == value, name
    assert at.select_slider(key="hist_bins").value == 150
    assert at.toggle(key="hist_log").value is False
    for name, raw in NON_DEFAULT.items():
        assert at.query_params[name] == raw, name
    # the summary's "within tolerance" at the link's tolerance, against the rule itself
    table = expected_table(loaded)
    summary = at.dataframe[-1].value
    column = SUMMARY_LABELS["within_tolerance"]
    got = summary[column].to_dict()
    important = table["jacobian"].abs() > 0.01
    assert got["all"] == pytest.approx(within_share(table, 0.05, 0.25))
    assert got["important"] == pytest.approx(within_share(table[important], 0.05, 0.25))
    assert got["all"] != pytest.approx(within_share(table, 0.01, 0.1))  # not the default
    captions = " ".join(c.value for c in at.caption)
    assert "with atol = 0.05 and rtol = 0.25" in captions
    at.switch_page(PAGES["effect"]).run()
    no_problems(at)
    assert at.number_input(key="tol_atol").value == 0.05
    assert at.select_slider(key="miss_n").value == 100
    at.select_slider(key="miss_n").set_value(50).run()
    assert at.query_params["miss_n"] == "50"
    at.number_input(key="tol_atol").set_value(0.01).run()  # back to the default: left out
    assert "tol_atol" not in at.query_params


def test_the_results_state_their_settings(app):
    at = app.run()
    at.sidebar.selectbox(key="layer").set_value(1).run()  # layer 1 has both pairs
    run(at)
    no_problems(at)
    captions = " ".join(c.value for c in at.caption)
    assert explore.verdict_rule() in captions
    assert "Reproduces the notebook's ε = 0.01, a unit step s = 1" in captions
    assert "unimportant 0.015 vs important 0.099" in captions
    assert "with atol = 0.01 and rtol = 0.1" in captions
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    captions = [c.value for c in at.caption]
    assert captions.count(explore.verdict_rule()) == 2  # under each pair's verdict
    assert sum("with atol = 0.01 and rtol = 0.1" in c for c in captions) == 2


LONG = " ".join(f"Sentence {i} of a long prompt, past what a link can carry." for i in range(40))


@pytest.fixture
def prompts_dir(tmp_path, monkeypatch):
    """A fresh prompt store for the test (the app keeps it under $JSAE_CACHE/prompts)."""
    monkeypatch.setenv("JSAE_CACHE", str(tmp_path / "cache"))
    st.cache_resource.clear()
    return tmp_path / "cache" / "prompts"


def test_a_long_prompt_is_kept_by_its_hash_and_its_link_reopens_it(
    app,
    loaded,  # noqa: F811
    tiny_source,  # noqa: F811
    prompts_dir,
):
    assert len(LONG) > explore.MAX_URL_TEXT
    at = app.run()
    at.text_area(key="prompt_text").set_value(LONG).run()
    run(at)
    no_problems(at)
    digest = hashlib.sha256(LONG.encode()).hexdigest()[:16]
    assert at.query_params["prompt_hash"] == digest and at.query_params["run"] == "1"
    assert "text" not in at.query_params
    assert (prompts_dir / f"{digest}.txt").read_text() == LONG
    assert any("too long for a link" in c.value for c in at.caption)
    shown = {m.label: m.value for m in at.metric}
    # a new session from the link: the same prompt, its results without pressing Run
    again = AppTest.from_file(APP, default_timeout=TIMEOUT)
    again.query_params.update(dict(at.query_params))
    again.run()
    no_problems(again)
    assert again.text_area(key="prompt_text").value == LONG
    assert {m.label: m.value for m in again.metric} == shown
    n = int((expected_table(loaded, text=LONG)["jacobian"].abs() > 0.01).sum())
    assert shown["Important connections"] == f"{n:,}"


def test_a_hash_this_server_does_not_hold_says_so(app, prompts_dir):
    app.query_params.update({"prompt_hash": "0123456789abcdef", "run": "1"})
    at = app.run()
    assert not at.exception
    assert any("is not on this server" in w.value for w in at.warning)
    assert at.text_area(key="prompt_text").value == next(iter(explore.default_prompts().values()))
    assert not at.metric  # no results claimed for a prompt it does not have


def test_copy_link_holds_the_views_link(app, tiny_source):  # noqa: F811
    at = run(app.run())
    at.select_slider(key="hist_bins").set_value(100).run()
    (code,) = [c.value for c in at.sidebar.code]
    path, _, query = code.partition("?")
    assert path.endswith("/")  # the default page at /
    got = {k: v[-1] for k, v in parse_qs(query).items()}
    assert got == dict(at.query_params) and got["hist_bins"] == "100"
    at.switch_page(PAGES["effect"]).run()
    (code,) = [c.value for c in at.sidebar.code]
    assert code.partition("?")[0].endswith("/jacobian_vs_effect")


@pytest.mark.parametrize(
    ("params", "sampler"),
    [
        ({"pairs": "equal_rank"}, PairSampler("equal_rank")),
        ({"pairs": "random", "seed": "7"}, PairSampler("random", 7)),
    ],
)
def test_the_pair_sampler_from_the_link(app, loaded, params, sampler):  # noqa: F811
    app.query_params.update({**params, "run": "1"})
    at = app.run()
    no_problems(at)
    assert at.sidebar.radio(key="pairs").value == sampler.how
    for name, raw in params.items():
        assert at.query_params[name] == raw
    table = sample_pairs(expected_table(loaded), sampler)
    n = int((table["jacobian"].abs() > 0.01).sum())
    shown = {m.label: m.value for m in at.metric}
    assert shown["Important connections"] == f"{n:,}"
    # Removed together takes every input of every token whatever the sampler kept: the
    # score is the unsampled run's, computed here with the package.
    (score,) = [m for m in at.metric if m.label == "Faithfulness score"]
    want = expected_analysis(loaded).joint.score
    assert float(score.value) == pytest.approx(want, rel=5e-3, abs=1e-3)
    assert any(f"sampled by {sampler.how!r}" in c.value for c in at.caption)
    at.sidebar.radio(key="pairs").set_value("all").run()
    assert "pairs" not in at.query_params and "seed" not in at.query_params
