"""Numbers that fit: after Run, at 1280×800 and 800×900, in the light and the dark theme (the
browser's colour scheme: the app pins no theme), no metric value on Causal sparsity or JSAE
vs plain is cut off (its text wider than its box, which the browser draws as "…"), and the
dark theme really is dark. Screenshots go to test-output/."""

from __future__ import annotations

import pytest

from app.registry import PAGES
from tests.test_e2e_browser import (
    CHART,
    CHROMIUM,
    CHROMIUM_ARGS,
    OUTPUT,
    RUN_TO_CHART_S,
    SERVER_START_S,
    server,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
__all__ = ["server"]

SIZES = [(1280, 800), (800, 900)]
CUT = """() => [...document.querySelectorAll("[data-testid='stMetricValue']")]
    .filter(el => [el, ...el.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1))
    .map(el => el.innerText)"""
BACKGROUND = "() => getComputedStyle(document.querySelector('.stApp')).backgroundColor"


def test_metric_values_fit_in_both_themes_and_sizes(server):
    from playwright.sync_api import sync_playwright

    url, _which, log = server
    OUTPUT.mkdir(exist_ok=True)
    cut = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            for scheme in ("light", "dark"):
                for width, height in SIZES:
                    page = browser.new_page(
                        viewport={"width": width, "height": height}, color_scheme=scheme
                    )
                    page.set_default_timeout(SERVER_START_S * 1000)
                    for path in ("", "jsae_vs_plain"):
                        page.goto(f"{url}/{path}?run=1")
                        page.locator(CHART).first.wait_for(
                            state="visible", timeout=RUN_TO_CHART_S * 1000
                        )
                        page.locator("[data-testid='stMetricValue']").first.wait_for()
                        page.wait_for_timeout(1000)
                        name = PAGES[path or "causal_sparsity"].url_path
                        page.screenshot(path=str(OUTPUT / f"layout_{name}_{scheme}_{width}.png"))
                        cut[(path or "/", scheme, width)] = page.evaluate(CUT)
                    background = page.evaluate(BACKGROUND)
                    dark = background not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)")
                    assert dark == (scheme == "dark"), (scheme, background)
                    page.close()
        finally:
            browser.close()
    assert not {k: v for k, v in cut.items() if v}, cut
    assert "Traceback" not in log.read_text()
