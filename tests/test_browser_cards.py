"""The browser sees a feature card: on the bundled default, a token-explorer link that names
a connection (``position``, ``in_feature``, ``out_feature``, taken from the URL the page
wrote after Run) opens in a fresh session with both ends' cards, and their firing counts
and frequencies are the ones in the bundle's ``features.parquet``, read here with pyarrow.
Then a click on a cell of the Jacobian heatmap selects another connection: the cards'
heading and the URL follow it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pyarrow.parquet as pq
import pytest

from jsae.loading import DEMO_DIR
from tests.test_e2e_browser import CHROMIUM, CHROMIUM_ARGS, OUTPUT, RUN_TO_CHART_S, server

pytestmark = [pytest.mark.browser, pytest.mark.slow]
__all__ = ["server"]

CARDS_HEADING = "Feature cards: in_feature"


def metric_value(page, label: str) -> str:
    metric = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    metric.scroll_into_view_if_needed()
    return metric.locator("[data-testid='stMetricValue']").inner_text().strip()


def click_another_cell(page, heading: str) -> str:
    """Click cells of the heatmap (the page's first chart) until the cards' heading names
    another connection; that heading."""
    from playwright.sync_api import TimeoutError as NoChange

    heatmap = page.locator("[data-testid='stVegaLiteChart']").first
    heatmap.scroll_into_view_if_needed()
    box = heatmap.bounding_box()
    cards = page.get_by_role("heading", name=CARDS_HEADING)
    link = page.url  # the URL is written when the script ends, maybe after the heading
    for share in (0.35, 0.5, 0.65):
        page.mouse.click(box["x"] + share * box["width"], box["y"] + share * box["height"])
        try:
            page.wait_for_function(
                f"() => location.search.includes('in_feature=') && location.href !== {link!r}"
                f" && !document.body.innerText.includes({heading!r})",
                timeout=20_000,
            )
        except NoChange:  # that cell was the selected one: try another
            continue
        return cards.first.inner_text().strip()
    raise AssertionError("no click on the heatmap selected another connection")


def bundled_card(layer: int, kind: str, side: str, feature: int) -> dict:
    table = pq.read_table(DEMO_DIR / "cards" / kind / f"layer_{layer}" / "features.parquet")
    rows = table.to_pandas()
    return rows[(rows["side"] == side) & (rows["feature"] == feature)].iloc[0].to_dict()


def test_a_linked_connection_shows_both_cards(server):
    from playwright.sync_api import sync_playwright

    url, which, log = server
    if which != "bundled default":
        pytest.skip("the bundled default (with its cards) is not built")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            first = browser.new_page(viewport={"width": 1400, "height": 1000})
            first.set_default_timeout(RUN_TO_CHART_S * 1000)
            first.goto(f"{url}/token_explorer")
            first.get_by_role("button", name="Run", exact=True).click()
            first.get_by_role("heading", name=CARDS_HEADING).wait_for(state="visible")
            first.wait_for_function("() => location.search.includes('out_feature=')")
            link = first.url
            params = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
            # A fresh session opens the link: the selection comes from the URL alone.
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(RUN_TO_CHART_S * 1000)
            page.goto(link)
            in_f, out_f = int(params["in_feature"]), int(params["out_feature"])
            heading = f"{CARDS_HEADING} {in_f} → out_feature {out_f}"
            page.get_by_role("heading", name=heading).wait_for(state="visible")
            layer, kind = int(params["layer"]), params["kind"]
            for side, feature in (("in", in_f), ("out", out_f)):
                card = bundled_card(layer, kind, side, feature)
                assert metric_value(page, f"{side} {feature}: fires") == f"{card['fires']:,}"
                assert metric_value(page, f"{side} {feature}: frequency") == (
                    f"{card['frequency']:.3%}"
                )
            page.get_by_text("Promoted tokens").first.wait_for(state="visible")
            clicked = click_another_cell(page, heading)
            new = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
            assert (new["in_feature"], new["out_feature"]) != (
                params["in_feature"],
                params["out_feature"],
            )
            assert (
                clicked == f"{CARDS_HEADING} {new['in_feature']} → out_feature {new['out_feature']}"
            )
            assert page.locator("[data-testid='stException']").count() == 0
            OUTPUT.mkdir(exist_ok=True)
            page.get_by_role("heading", name=clicked).scroll_into_view_if_needed()
            page.wait_for_timeout(1500)  # let the rerun finish drawing before the screenshot
            page.screenshot(path=str(OUTPUT / "browser_cards.png"))
        finally:
            browser.close()
    assert "Traceback" not in log.read_text()
