"""Hosted mode and "Log to W&B": off unless the configuration enables it; when enabled,
rate-limited per session and per site, and inside an experiment slot."""

from types import SimpleNamespace

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from jsae import explore, wandb_log
from jsae.hosting import (
    WANDB_LOGS_PER_SESSION,
    WANDB_PERIOD,
    HostedConfig,
    RateLimiter,
    RateLimitError,
)
from jsae.loading import save_source
from tests.helpers import tiny_model, tiny_pair

APP = "../streamlit_app.py"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    model = tiny_model()
    path = tmp_path_factory.mktemp("hosted") / "src"
    return str(save_source(path, model, {"jsae": {0: tiny_pair(model, 0)}}))


@pytest.fixture
def logged(monkeypatch):
    """Every W&B log the app starts (none reaches W&B)."""
    calls = []

    def fake(result, **kwargs):
        calls.append(kwargs)
        return SimpleNamespace(describe=lambda: "logged to W&B (test)")

    monkeypatch.setattr(wandb_log, "log_to_wandb", fake)
    return calls


@pytest.fixture
def app(source, monkeypatch, logged):
    st.cache_resource.clear()
    st.cache_data.clear()
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, source)
    monkeypatch.setenv("JSAE_ALLOWED_SOURCES", source)
    for key in ("JSAE_HOSTED", "JSAE_HOSTED_WANDB", "JSAE_MAX_CONCURRENT", "JSAE_SLOT_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    return AppTest.from_file(APP, default_timeout=60)


def run_prompt(at):
    at.run()
    at.button(key="run_button").click().run()
    assert not at.exception and not at.error
    return at


def wandb_buttons(at):
    return [b for b in at.button if b.key == "wandb_log"]


def test_hosted_mode_offers_no_wandb_unless_enabled(app, monkeypatch, logged):
    monkeypatch.setenv("JSAE_HOSTED", "1")
    at = run_prompt(app)
    assert at.metric, "the run's results are shown"
    assert not wandb_buttons(at), "anonymous visitors cannot start runs with the server's key"
    assert not logged


def test_a_private_app_offers_wandb(app, logged):
    at = run_prompt(app)
    at.button(key="wandb_log").click().run()
    assert [s.value for s in at.success] == ["logged to W&B (test)"] and len(logged) == 1


def test_enabled_hosted_wandb_is_rate_limited_per_session(app, monkeypatch, logged):
    monkeypatch.setenv("JSAE_HOSTED", "1")
    monkeypatch.setenv("JSAE_HOSTED_WANDB", "1")
    at = run_prompt(app)
    for _ in range(WANDB_LOGS_PER_SESSION):
        at.button(key="wandb_log").click().run()
        assert not at.error and at.success
    assert len(logged) == WANDB_LOGS_PER_SESSION
    at.button(key="wandb_log").click().run()
    assert len(logged) == WANDB_LOGS_PER_SESSION, "the limit holds"
    assert any(f"At most {WANDB_LOGS_PER_SESSION} W&B logs" in e.value for e in at.error)
    assert any("in one session" in e.value for e in at.error)


def test_enabled_hosted_wandb_takes_an_experiment_slot(app, monkeypatch, logged):
    from app import cache

    monkeypatch.setenv("JSAE_HOSTED", "1")
    monkeypatch.setenv("JSAE_HOSTED_WANDB", "1")
    monkeypatch.setenv("JSAE_MAX_CONCURRENT", "1")
    monkeypatch.setenv("JSAE_SLOT_TIMEOUT", "0.2")
    at = run_prompt(app)
    with cache.slot_limiter(1).slot():  # somebody else's experiment holds the only slot
        at.button(key="wandb_log").click().run()
    assert any("stayed busy" in e.value for e in at.error) and not logged
    at.button(key="wandb_log").click().run()  # the slot is free again; nothing was counted
    assert at.success and len(logged) == 1


def test_settings_read_the_wandb_switch():
    assert not HostedConfig.from_settings({"JSAE_HOSTED": "1"}).offers_wandb
    assert HostedConfig.from_settings({}).offers_wandb, "a private app always offers it"
    on = HostedConfig.from_settings({"JSAE_HOSTED": "1", "JSAE_HOSTED_WANDB": "yes"})
    assert on.wandb and on.offers_wandb
    secrets = {"hosted": {"enabled": True, "wandb": True}}
    assert HostedConfig.from_settings({}, secrets).offers_wandb
    assert not HostedConfig.from_settings({"JSAE_HOSTED_WANDB": "0"}, secrets).offers_wandb


def test_rate_limiter_is_a_sliding_window():
    now = [0.0]
    limiter = RateLimiter(2, period=WANDB_PERIOD, clock=lambda: now[0])
    limiter.take("here")
    now[0] = 600.0
    limiter.take("here")
    with pytest.raises(RateLimitError, match="At most 2 W&B logs per 60 minutes here; .* in 50"):
        limiter.check("here")
    now[0] = WANDB_PERIOD  # the first has left the window
    limiter.take("here")
    with pytest.raises(RateLimitError, match="in 10 minute"):
        limiter.take("here")
