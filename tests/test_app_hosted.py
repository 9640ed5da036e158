"""Hosted mode (JSAE_HOSTED=1), driven with AppTest: the allowlist holds whatever the URL or
the widgets say, prompts are capped and cleaned, and busy slots are explained."""

import hashlib

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from jsae import explore, loading
from jsae.loading import load_source, save_source
from jsae.stats import summarize
from tests.helpers import tiny_model, tiny_pair

APP = "../streamlit_app.py"
TIMEOUT = 60
SECRET = "wandb-key-that-must-never-show-0123456789"


@pytest.fixture(scope="module")
def allowed(tmp_path_factory):
    model = tiny_model()
    pairs = {"jsae": {0: tiny_pair(model, 0)}, "plain": {0: tiny_pair(model, 0, kind="plain")}}
    return str(save_source(tmp_path_factory.mktemp("hosted") / "allowed", model, pairs))


@pytest.fixture(scope="module")
def forbidden(tmp_path_factory):
    model = tiny_model()
    return str(
        save_source(
            tmp_path_factory.mktemp("hosted") / "other", model, {"jsae": {0: tiny_pair(model, 0)}}
        )
    )


@pytest.fixture
def loads(monkeypatch):
    """Every source the app asks the loader for."""
    st.cache_resource.clear()
    st.cache_data.clear()
    seen = []
    real = loading.load_source

    def recording(source, **kwargs):
        seen.append(str(source))
        return real(source, **kwargs)

    monkeypatch.setattr("app.cache.load_source", recording)
    return seen


@pytest.fixture
def hosted_app(allowed, monkeypatch, loads):
    monkeypatch.setenv("JSAE_HOSTED", "1")
    monkeypatch.setenv("JSAE_ALLOWED_SOURCES", allowed)
    monkeypatch.setenv("JSAE_MAX_PROMPT_TOKENS", "12")
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, allowed)
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def _run(at):
    at.button(key="run_button").click().run()
    return at


def _all_text(at) -> str:
    parts = [str(el.proto) for el in at.main] + [str(el.proto) for el in at.sidebar]
    return "\n".join(parts) + str(at.query_params)


def test_hosted_sidebar_offers_only_the_allowlist(hosted_app, allowed, loads):
    at = hosted_app.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="hosted_source").options == [allowed]
    assert "source_type" not in [r.key for r in at.sidebar.radio], "no free-form source types"
    assert not at.sidebar.text_input, "no paths or artifact names typed by visitors"
    _run(at)
    assert not at.exception and not at.error
    assert set(loads) == {allowed}


@pytest.mark.parametrize(
    "params",
    [
        {"source": "FORBIDDEN"},
        {"source": "/etc"},
        {"source": "evil/project/pairs:v0"},
        {"source": "demo", "model": "gpt2"},
        {"source": "ALLOWED", "model": "/tmp"},
    ],
)
def test_crafted_query_params_cannot_escape_the_allowlist(
    hosted_app, allowed, forbidden, loads, params
):
    subst = {"FORBIDDEN": forbidden, "ALLOWED": allowed}
    for key, value in params.items():
        hosted_app.query_params[key] = subst.get(value, value)
    at = hosted_app.run()
    assert not at.exception
    if params["source"] != "ALLOWED":
        assert any("only serves its configured sources" in w.value for w in at.warning)
    _run(at)
    assert not at.exception
    assert set(loads) == {allowed}, "nothing outside the allowlist is loaded"


def test_oversized_and_control_character_prompts(hosted_app, allowed):
    at = hosted_app.run()
    at.text_area(key="prompt_text").set_value("A\x00B\x1b long prompt " + "word " * 200).run()
    _run(at)
    assert not at.exception and not at.error
    assert any("control character" in c.value for c in at.caption)
    assert any("dropped to fit the limit of 12 tokens" in w.value for w in at.warning)
    cleaned = "AB long prompt " + "word " * 200
    key = explore.RunKey(allowed, None, 0, "jsae", "unit", 1.0, cleaned)
    table = explore.run_ablation(load_source(allowed), key, max_tokens=12).table
    shown = {m.label: m.value for m in at.metric}
    assert len(table) == 11 * 8 * 8  # 12 tokens minus BOS, k 8 x 8
    assert shown["Important connections"] == f"{int(table['jacobian'].abs().gt(0.01).sum()):,}"


def test_eps_as_text_in_the_url_warns_and_uses_the_default(hosted_app):
    hosted_app.query_params["eps"] = "lots"
    at = hosted_app.run()
    assert not at.exception
    assert at.warning, "a bad ε in the link is reported"


def test_busy_slots_are_explained(hosted_app, monkeypatch):
    from app import cache

    monkeypatch.setenv("JSAE_MAX_CONCURRENT", "1")
    monkeypatch.setenv("JSAE_SLOT_TIMEOUT", "0.2")
    limiter = cache.slot_limiter(1)
    with limiter.slot():  # somebody else's experiment holds the only slot
        at = _run(hosted_app.run())
    assert not at.exception
    assert any("stayed busy" in e.value for e in at.error)
    at = _run(at)  # the slot is free again
    assert not at.error and at.metric


def test_the_wandb_key_is_never_shown(hosted_app, allowed):
    at = _run(hosted_app.run())
    assert SECRET not in _all_text(at)


def test_hosted_numbers_equal_the_package(hosted_app, allowed):
    at = _run(hosted_app.run())
    name, text = next(iter(explore.default_prompts().items()))
    src = load_source(allowed)
    data = explore.run_ablation(
        src, explore.RunKey(allowed, None, 0, "jsae", "unit", 1.0, text), max_tokens=12
    )
    from jsae.table import split

    summary = summarize(split(data.table, 0.01))
    shown = {m.label: m.value for m in at.metric}
    assert shown["Important connections"] == f"{int(summary.loc['important', 'connections']):,}"


LONG = " ".join(f"Sentence {i} of a long prompt, past what a link can carry." for i in range(40))


def test_a_long_prompt_stays_in_memory_and_its_link_reopens_it(hosted_app, tmp_path, monkeypatch):
    """Hosted: the long prompt's link works on this server, and nothing a visitor typed is
    written under the cache folder (where the disk store would put it)."""
    monkeypatch.setenv("JSAE_CACHE", str(tmp_path / "cache"))
    assert len(LONG) > explore.MAX_URL_TEXT
    at = hosted_app.run()
    at.text_area(key="prompt_text").set_value(LONG).run()
    at = _run(at)
    assert not at.exception
    digest = hashlib.sha256(LONG.encode()).hexdigest()[:16]
    assert at.query_params["prompt_hash"] == digest
    assert any("in memory only" in c.value for c in at.caption)
    written = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert not any(LONG[:40] in p.read_text(errors="ignore") for p in written), written
    assert not (tmp_path / "cache" / "prompts").exists()
    again = AppTest.from_file(APP, default_timeout=TIMEOUT)
    again.query_params.update(dict(at.query_params))
    again.run()
    assert not again.exception
    assert again.text_area(key="prompt_text").value == LONG
