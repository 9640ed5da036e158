"""Every page opens from a cold link: a fresh ``streamlit run streamlit_app.py`` (``make app``)
per link, Debian's Chromium; and ``/`` on a fresh ``streamlit run serve.py`` (``make serve``,
warmed up at start).

The first paint (the page's title, the navigation and the loading status) must come before
the package is imported (``streamlit_app.py`` imports ``jsae`` only after it), so it is on
screen within ``FIRST_PAINT_S`` of opening the link, and no "Page not found" dialog ever
shows: the default page opens by ``/`` and by its own name. On the default page's named
link, and on the warm server's ``/``, Run draws a chart. The warm server's first paint is
not held to ``FIRST_PAINT_S``: its warm-up thread imports while the page's assets are
served, which on this 2-core machine puts the paint at 1.3-2.0 s
(``benchmarks/bench_app.py --browser --variant``; ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import time

import pytest

from app.registry import DEFAULT_PAGE, PAGES
from tests.test_e2e_browser import (
    CHART,
    CHROMIUM,
    CHROMIUM_ARGS,
    RUN_TO_CHART_S,
    SERVE,
    server,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
__all__ = ["server"]  # the fixture: a fresh server per test

FIRST_PAINT_S = 2.0
"""The issue's bound: title and navigation within 2 s of opening a cold server's page."""
USABLE_S = 60
NAV = "[data-testid='stSidebarNavLink']"
LINKS = ["", *PAGES]
"""``/`` (the default page) and every page by its name."""


@pytest.mark.parametrize("path", LINKS, ids=lambda p: p or "root")
def test_a_cold_link_paints_first_and_opens_its_page(server, path):
    open_cold(server, path, run=path == DEFAULT_PAGE)


@pytest.mark.parametrize("server", [SERVE], indirect=True)
def test_the_warm_server_opens_and_runs(server):
    open_cold(server, "", run=True, paint_within=None)


def open_cold(server, path: str, *, run: bool, paint_within: float | None = FIRST_PAINT_S) -> None:
    """Open ``path`` on the cold ``server``: first paint within ``paint_within`` seconds
    (unless None), the right page, no "Page not found", the Run button; with ``run``, Run
    draws a chart."""
    from playwright.sync_api import sync_playwright

    url, _which, log = server
    expected = PAGES[path or DEFAULT_PAGE].title
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            start = time.perf_counter()
            page.goto(f"{url}/{path}", wait_until="commit")
            page.locator(NAV).first.wait_for(state="visible", timeout=USABLE_S * 1000)
            page.get_by_role("heading", name=expected).wait_for(state="visible")
            painted = time.perf_counter() - start
            assert page.locator(NAV).count() == len(PAGES)  # the hidden alias has no link
            assert page.get_by_text("Page not found").count() == 0
            button = page.get_by_role("button", name="Run", exact=True)
            button.wait_for(state="visible", timeout=USABLE_S * 1000)
            assert page.get_by_text("Page not found").count() == 0
            assert page.locator("h1").first.inner_text() == expected
            if run:
                button.click()
                page.locator(CHART).first.wait_for(state="visible", timeout=RUN_TO_CHART_S * 1000)
            assert page.locator("[data-testid='stException']").count() == 0
            if paint_within is not None:
                assert painted <= paint_within, f"first paint took {painted:.2f} s"
        finally:
            browser.close()
    assert "Traceback" not in log.read_text()
