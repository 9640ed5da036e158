"""Edge inputs the explorer must refuse rather than read as results: a zero scale, a scale
past float32's range and one whose perturbation overflows. The messages are the engine's
(``AblationConfig``, ``jsae.finite``), checked here against the engine called directly, so
the CLI and the app say the same thing."""

import pytest
from streamlit.testing.v1 import AppTest

from jsae import explore
from jsae.ablation import AblationConfig, ablate
from jsae.errors import JSAEError
from jsae.loading import load_source
from tests.test_app import APP, TIMEOUT, first_prompt, run, tiny_source  # noqa: F401

__all__ = ["tiny_source"]


@pytest.fixture
def app(tiny_source, monkeypatch):  # noqa: F811
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, tiny_source)
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def engine_message(source: str, scale: float) -> str:
    """What the engine itself says for this scale (the reference the page must show)."""
    src = load_source(source)
    with pytest.raises(JSAEError) as err:
        ablate(
            src.model,
            src.pair(0, "jsae"),
            first_prompt()[1],
            config=AblationConfig(mode="scale", scale=scale),
        )
    return str(err.value)


@pytest.mark.parametrize(
    ("scale", "said"),
    [(0.0, "s = 0 perturbs nothing"), (1e300, "within float32's range")],
)
def test_a_scale_the_engine_refuses_is_refused_before_run(app, tiny_source, scale, said):  # noqa: F811
    at = app.run()
    at.sidebar.radio(key="mode").set_value("scale").run()
    at.sidebar.number_input(key="scale").set_value(scale).run()
    message = engine_message(tiny_source, scale)
    assert said in message
    assert [e.value for e in at.sidebar.error] == [message]  # before Run
    run(at)
    assert not at.exception
    assert message in [e.value for e in at.error]
    assert not at.metric and not at.success  # no verdict, no numbers


def test_an_overflowing_scale_is_refused_with_the_engines_message(app, tiny_source):  # noqa: F811
    at = app.run()
    at.sidebar.radio(key="mode").set_value("scale").run()
    at.sidebar.number_input(key="scale").set_value(3e38).run()
    assert not at.sidebar.error  # float32 holds it; the perturbation overflows
    run(at)
    message = engine_message(tiny_source, 3e38)
    assert "NaN or infinite values appeared" in message
    assert not at.exception
    assert message in [e.value for e in at.error]
    assert not any("Unexpected error" in e.value for e in at.error)
    assert not at.metric
