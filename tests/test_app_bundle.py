"""The explorer on the real bundled default (skipped while the bundle is absent)."""

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from jsae import explore
from jsae.loading import DEMO_DIR, SOURCE_MANIFEST

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DEMO_DIR / SOURCE_MANIFEST).is_file(),
        reason="the bundled default (jsae/assets/demo) is not built yet",
    ),
]

OUTPUT = Path(__file__).resolve().parents[1] / "test-output"


def test_default_prompt_on_the_bundle(monkeypatch):
    monkeypatch.delenv(explore.DEFAULT_SOURCE_ENV, raising=False)
    at = AppTest.from_file("../streamlit_app.py", default_timeout=120).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.sidebar.radio(key="source_type").value == "demo"
    layers = at.sidebar.selectbox(key="layer").options
    assert len(layers) >= 1
    at.button(key="run_button").click()
    start = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - start
    assert not at.exception and not at.error, [e.value for e in at.error]
    labels = {m.label for m in at.metric}
    assert {"Important connections", "Unimportant connections"} <= labels
    assert at.get("vega_lite_chart")
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "apptest_bundle_timing.txt").write_text(
        f"AppTest: Run -> page 1 drawn on the bundled default: {elapsed:.2f} s\n"
    )
    # Every page draws on the bundle too.
    for page in (
        "app/pages/jacobian_vs_effect.py",
        "app/pages/token_explorer.py",
        "app/pages/jsae_vs_plain.py",
    ):
        at.switch_page(page).run()
        assert not at.exception and not at.error, (page, [e.value for e in at.error])
        assert at.get("vega_lite_chart"), page
