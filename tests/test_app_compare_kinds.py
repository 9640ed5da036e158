"""JSAE vs plain compares any two kinds of the source, A and B: by default the source's
comparison (jsae vs plain), any other from its pickers or the link; its caption names the
two pairs; the sidebar's pair kind does not make its results stale."""

import pytest
from streamlit.testing.v1 import AppTest

from jsae import explore
from jsae.loading import PLANTED_SOURCE
from jsae.pair import KIND_LABELS
from jsae.planted import PLANTED_KINDS
from tests.test_app import APP, PAGES, TIMEOUT, no_problems, run, tiny_source  # noqa: F401

__all__ = ["tiny_source"]
STALE = "The settings changed since the last Run"


@pytest.fixture
def app(tiny_source, monkeypatch):  # noqa: F811
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, tiny_source)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["layer"] = "1"  # both pairs
    return at


def captions(at):
    return [c.value for c in at.caption]


def test_the_default_pairs_the_caption_and_no_false_stale_warning(app):
    at = run(app.run())
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    assert at.selectbox(key="cmp_a").value == "jsae" and at.selectbox(key="cmp_b").value == "plain"
    want = f"Layer 1 · {KIND_LABELS['jsae']} vs {KIND_LABELS['plain']} · mode unit · ε = 0.01"
    assert want in captions(at)
    assert not any("both pairs" in c for c in captions(at))
    at.sidebar.radio(key="kind").set_value("plain").run()  # the page picks its own kinds
    assert not any(STALE in i.value for i in at.info)
    at.sidebar.radio(key="mode").set_value("zero").run()  # a real change still says so
    assert any(STALE in i.value for i in at.info)


def test_the_link_and_the_pickers_choose_a_and_b(app):
    app.query_params.update({"cmp_a": "plain", "cmp_b": "jsae", "run": "1"})
    at = app.run()
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    assert (at.selectbox(key="cmp_a").value, at.selectbox(key="cmp_b").value) == ("plain", "jsae")
    assert at.query_params["cmp_a"] == "plain" and at.query_params["cmp_b"] == "jsae"
    assert f"Layer 1 · {KIND_LABELS['plain']} vs {KIND_LABELS['jsae']}" in " ".join(captions(at))
    assert [s.value for s in at.subheader][:2] == [KIND_LABELS["plain"], KIND_LABELS["jsae"]]
    at.selectbox(key="cmp_b").set_value("plain").run()
    assert any("Pick two different kinds" in i.value for i in at.info)


def test_a_kind_the_layer_lacks_falls_back_with_a_warning(app):
    app.query_params.update({"cmp_a": "nope", "run": "1"})
    at = app.run()
    at.switch_page(PAGES["compare"]).run()
    assert not at.exception
    assert any("Pair A = 'nope' has no pair at this layer" in w.value for w in at.warning)
    assert at.selectbox(key="cmp_a").value == "jsae"


def test_any_two_kinds_of_the_planted_source(monkeypatch):
    monkeypatch.delenv(explore.DEFAULT_SOURCE_ENV, raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"source": PLANTED_SOURCE, "cmp_a": "true", "cmp_b": "noisy"})
    at.query_params["run"] = "1"
    at.run()
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    assert at.selectbox(key="cmp_a").options == [
        PLANTED_KINDS.label(k) for k in PLANTED_KINDS.order
    ]
    labels = [PLANTED_KINDS.label(k) for k in ("true", "noisy")]
    assert [s.value for s in at.subheader][:2] == labels
    assert f"{labels[0]} vs {labels[1]}" in " ".join(captions(at))
