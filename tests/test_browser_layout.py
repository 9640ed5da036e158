"""Numbers that fit: after Run, at 1280×800 and 800×900, in the light and the dark theme (the
browser's colour scheme: the app pins no theme), no metric value on Causal sparsity or JSAE
vs plain is cut off (its text wider than its box, which the browser draws as "…"), the
default page's first chart is mostly above the fold at 1280×800, and the dark theme really is
dark; no widget label is cut and tables show their key columns on every page. Screenshots go
to test-output/."""

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
FOLD = (1280, 800)
"""Where the default page's first chart (the diff histogram) must be on screen after Run."""
CUT = """() => [...document.querySelectorAll("[data-testid='stMetricValue']")]
    .filter(el => [el, ...el.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1))
    .map(el => el.innerText)"""
BACKGROUND = "() => getComputedStyle(document.querySelector('.stApp')).backgroundColor"


def test_metric_values_fit_in_both_themes_and_sizes(server):
    from playwright.sync_api import sync_playwright

    url, _which, log = server
    OUTPUT.mkdir(exist_ok=True)
    cut, folds = {}, {}
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
                        if not path and (width, height) == FOLD:
                            box = page.locator("[data-testid='stVegaLiteChart']").first
                            folds[scheme] = box.bounding_box()
                    background = page.evaluate(BACKGROUND)
                    dark = background not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)")
                    assert dark == (scheme == "dark"), (scheme, background)
                    page.close()
        finally:
            browser.close()
    assert not {k: v for k, v in cut.items() if v}, cut
    for scheme, box in folds.items():  # the histogram: at least half of it above the fold
        assert box["y"] + box["height"] / 2 <= FOLD[1], (scheme, box)
    assert "Traceback" not in log.read_text()


LABELS_AND_TABLES = """() => {
  const cut = el => [el, ...el.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1);
  const labels = [...document.querySelectorAll("[data-testid='stWidgetLabel']")]
    .filter(cut).map(el => el.innerText);
  const tables = [...document.querySelectorAll("[data-testid='stDataFrame']")].map(frame => {
    const grid = frame.querySelector("table[role='grid']");
    const scroller = frame.querySelector(".dvn-scroller");
    return {
      headers: [...grid.querySelectorAll("th")].map(th => th.innerText),
      columns: Number(grid.getAttribute("aria-colcount")),
      scrolls: scroller.scrollWidth > scroller.clientWidth + 1,
    };
  });
  return {labels, tables};
}"""
"""The widget labels drawn cut (text wider than its box), and each table's columns in view:
the data grid (glide) lists in its accessibility table only the columns it draws, and a
table wider than its box scrolls sideways, its last drawn column cut at the edge."""

GRIDS_DRAWN = """() => !document.querySelector("[data-testid='stStatusWidget']")
    && [...document.querySelectorAll("[data-testid='stDataFrame']")]
        .every(frame => frame.querySelector("table[role='grid']"))"""
"""The script has finished (no "Running" status) and every table's grid is drawn."""
PAGES_CHECKED = ("", "token_explorer", "jsae_vs_plain", "jacobian_vs_effect")
TOKEN_KEYS = ("diff", "important")


def whole(table: dict) -> list[str]:
    """The columns shown whole: all drawn ones, less the one cut at the edge of a table that
    scrolls sideways."""
    return table["headers"][:-1] if table["scrolls"] else table["headers"]


def test_labels_and_key_columns_are_shown_whole(server):
    """At 1280×800 and 800×900 after Run, on all four pages: no widget label is cut; every
    table shows its first column whole (key columns come first); the token explorer's top
    connections show diff and important whole; the summary tables of JSAE vs plain fit
    without scrolling at 1280."""
    from playwright.sync_api import sync_playwright

    url, _which, log = server
    found = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            for width, height in SIZES:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.set_default_timeout(SERVER_START_S * 1000)
                for path in PAGES_CHECKED:
                    page.goto(f"{url}/{path}?run=1")
                    page.locator(CHART).first.wait_for(
                        state="visible", timeout=RUN_TO_CHART_S * 1000
                    )
                    page.locator("[data-testid='stDataFrame']").first.wait_for()
                    page.wait_for_function(GRIDS_DRAWN)  # the page draws the verdict after
                    page.wait_for_timeout(1500)
                    name = PAGES[path or "causal_sparsity"].url_path
                    found[(name, width)] = page.evaluate(LABELS_AND_TABLES)
                page.close()
        finally:
            browser.close()
    cut = {k: v["labels"] for k, v in found.items() if v["labels"]}
    assert not cut, cut
    for (name, width), seen in found.items():
        assert seen["tables"], (name, width)
        for table in seen["tables"]:
            assert whole(table)[:1] == table["headers"][:1], (name, width, table)
        if name == "token_explorer":
            top = seen["tables"][0]
            assert all(k in whole(top) for k in TOKEN_KEYS), (width, top)
        if name == "jsae_vs_plain" and width == 1280:
            assert not any(t["scrolls"] for t in seen["tables"]), seen["tables"]
    assert "Traceback" not in log.read_text()
