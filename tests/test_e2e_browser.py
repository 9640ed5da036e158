"""End to end in a real browser: `streamlit run` on loopback, Debian's Chromium driven by
Playwright, Run on the default prompt, the histogram and the decomposition bar drawn, the
joint ablation's faithfulness curves, the statistics panel with its mass-capture curve, and
JSAE vs plain's ε sweep and both pairs' faithfulness curves; then the planted ground truth
opened by a link, with its true edges.

Uses the bundled default when it exists, else a tiny source folder. Leaves screenshots
(the causal sparsity page's top, its "Removed together" section, its statistics panel,
JSAE vs plain's analysis and curves) and the measured time from Run to the chart in
test-output/.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from jsae import explore
from jsae.loading import DEMO_DIR, PLANTED_SOURCE, SOURCE_MANIFEST, save_source
from tests.helpers import tiny_model, tiny_pair

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
SCRIPT = "streamlit_app.py"
"""What ``make app`` runs: the app's script itself (nothing warmed up)."""
SERVE = "serve.py"
"""What ``make serve`` runs: the app warmed up at server start (``app.warm_up``)."""
SERVER_START_S = 90
RUN_TO_CHART_S = 120
CHART = "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg"
DECOMPOSITION_HEADING = "Where does the movement come from?"
STATISTICS_HEADING = "Does |J| say what moves?"
JOINT_HEADING = "Removed together"
DOWNSTREAM_HEADING = "Downstream: what the model loses with fewer connections"
JOINT_COMPARE_HEADING = "Removed together: which inputs can go?"
CURVES_CHART = 3
"""The causal sparsity page's charts: histogram, decomposition, the sets removed together,
the faithfulness curves, the mass-capture curve."""
SWEEP_HEADING = "Across ε"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"streamlit did not answer /_stcore/health in {SERVER_START_S} s")


@contextlib.contextmanager
def streamlit_server(
    env: dict[str, str], tmp_path: Path, *, script: str = SCRIPT, root: Path = ROOT
):
    """``streamlit run SCRIPT`` (default ``streamlit_app.py``, what ``make app`` runs) in ``root`` on a
    free loopback port, healthy before it yields (url, process, log path); always stopped
    afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "streamlit.log"
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        script,
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_health(url, proc, log)
        yield url, proc, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture
def server(request, tmp_path):
    """A fresh server on the bundled default (a tiny source when it is missing), running
    ``streamlit_app.py`` unless the test parametrizes it indirectly with another script."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's Chromium with `make browser`")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    env = {k: v for k, v in os.environ.items() if k != explore.DEFAULT_SOURCE_ENV}
    if (DEMO_DIR / SOURCE_MANIFEST).is_file():
        which = "bundled default"
    else:
        model = tiny_model()
        pairs = {"jsae": {0: tiny_pair(model, 0)}, "plain": {0: tiny_pair(model, 0, kind="plain")}}
        env[explore.DEFAULT_SOURCE_ENV] = str(save_source(tmp_path / "src", model, pairs))
        which = "tiny source (the bundled default is missing)"
    script = getattr(request, "param", SCRIPT)
    with streamlit_server(env, tmp_path, script=script) as (url, _proc, log):
        yield url, which, log


def test_run_draws_the_histogram_and_the_decomposition(server):
    from playwright.sync_api import sync_playwright

    url, which, log = server
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2100})
            page.set_default_timeout(SERVER_START_S * 1000)
            # The first request to a fresh server is a deep link: st.navigation resolves it
            # by its url_path, with no "Page not found" and the frame around.
            page.goto(f"{url}/token_explorer")
            run = page.get_by_role("button", name="Run", exact=True)
            run.wait_for(state="visible")
            assert page.locator("h1").first.inner_text() == "Token explorer"
            assert page.get_by_text("Page not found").count() == 0
            # The four pages, and nothing auto-discovered.
            links = page.locator("[data-testid='stSidebarNavLink']")
            assert links.count() == 4
            links.first.click()  # Causal sparsity, the default page
            page.get_by_role("heading", name="Causal sparsity").wait_for(state="visible")
            run.click()
            start = time.perf_counter()
            page.locator(CHART).first.wait_for(state="visible", timeout=RUN_TO_CHART_S * 1000)
            elapsed = time.perf_counter() - start
            page.get_by_text("Important connections").first.wait_for(state="visible")
            # Under the histogram: the decomposition bar (the page's second chart) and
            # P(exit) per experiment.
            page.get_by_role("heading", name=DECOMPOSITION_HEADING).wait_for(state="visible")
            bar = page.locator(CHART).nth(1)
            bar.scroll_into_view_if_needed()
            bar.wait_for(state="visible", timeout=RUN_TO_CHART_S * 1000)
            page.get_by_text("Unimportant P(exit)").first.wait_for(state="visible")
            assert page.locator("[data-testid='stVegaLiteChart']").count() >= 2
            assert page.locator("[data-testid='stException']").count() == 0
            assert page.locator("[data-testid='stAlertContentError']").count() == 0
            # The URL is written when the script ends (once: each write is a history entry),
            # which may come after the charts above are drawn.
            page.wait_for_function("() => location.search.includes('run=1')")
            page.wait_for_timeout(1000)  # let vega finish drawing before the screenshot
            page.screenshot(path=str(OUTPUT / "e2e_causal_sparsity.png"), full_page=True)
            # The joint ablation: the sets' histogram and the faithfulness curves.
            page.get_by_role("heading", name=JOINT_HEADING, exact=True).wait_for(state="visible")
            curves = page.locator(CHART).nth(CURVES_CHART)
            curves.scroll_into_view_if_needed()
            curves.wait_for(state="visible", timeout=RUN_TO_CHART_S * 1000)
            page.get_by_text("Faithfulness score", exact=True).first.wait_for(state="visible")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(OUTPUT / "e2e_removed_together.png"))
            # The statistics panel: its table and the mass-capture curve (the last chart).
            page.get_by_role("heading", name=STATISTICS_HEADING).scroll_into_view_if_needed()
            capture = page.locator(CHART).nth(CURVES_CHART + 1)
            capture.scroll_into_view_if_needed()
            capture.wait_for(state="visible", timeout=RUN_TO_CHART_S * 1000)
            page.get_by_text("Why?").first.wait_for(state="visible")
            page.get_by_role("heading", name=STATISTICS_HEADING).scroll_into_view_if_needed()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(OUTPUT / "e2e_statistics.png"))
            # JSAE vs plain: both pairs' analyses, the ε sweep and the matched fraction.
            links.nth(3).click()
            page.get_by_role("heading", name=SWEEP_HEADING).wait_for(
                state="visible", timeout=RUN_TO_CHART_S * 1000
            )
            page.get_by_text("AUC", exact=True).first.wait_for(state="visible")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(OUTPUT / "e2e_jsae_vs_plain.png"))
            capture = page.locator(CHART).nth(-3)
            capture.scroll_into_view_if_needed()
            capture.wait_for(state="visible", timeout=RUN_TO_CHART_S * 1000)
            assert page.locator("[data-testid='stVegaLiteChart']").count() >= 6
            page.wait_for_timeout(1000)
            page.screenshot(path=str(OUTPUT / "e2e_jsae_vs_plain_sweep.png"))
            # Both pairs' faithfulness curves, then their downstream KL, the last chart.
            page.get_by_role("heading", name=JOINT_COMPARE_HEADING).scroll_into_view_if_needed()
            joint = page.locator(CHART).nth(-2)
            joint.scroll_into_view_if_needed()
            joint.wait_for(state="visible", timeout=RUN_TO_CHART_S * 1000)
            page.get_by_role("heading", name=DOWNSTREAM_HEADING).wait_for(
                state="visible", timeout=RUN_TO_CHART_S * 1000
            )
            joint = page.locator(CHART).last
            joint.scroll_into_view_if_needed()
            joint.wait_for(state="visible", timeout=RUN_TO_CHART_S * 1000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(OUTPUT / "e2e_jsae_vs_plain_curves.png"))
            assert page.locator("[data-testid='stException']").count() == 0
            assert page.locator("[data-testid='stAlertContentError']").count() == 0
            (OUTPUT / "e2e_timing.txt").write_text(
                f"source: {which}\nRun -> histogram visible: {elapsed:.2f} s\n"
            )
        finally:
            browser.close()
    assert "Traceback" not in log.read_text()


def test_the_planted_source_opens_with_its_ground_truth(server):
    """A link to the planted source runs it: the verdict calls the true pair sound, the
    precision and recall against the true edges are on the page, and the token explorer
    draws its heatmap with the true edges marked."""
    from playwright.sync_api import sync_playwright

    url, _which, log = server
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2100})
            page.set_default_timeout(SERVER_START_S * 1000)
            page.goto(f"{url}/?source={PLANTED_SOURCE}&kind=true&run=1")
            page.get_by_text("Yes, the Jacobian's sparsity is sound").first.wait_for(
                state="visible", timeout=RUN_TO_CHART_S * 1000
            )
            # exact: the "Why?" expander's reasons (hidden) say "against the true edges" too
            heading = page.get_by_text("Against the true edges", exact=True).first
            heading.scroll_into_view_if_needed()
            heading.wait_for(state="visible")
            assert page.get_by_text("Planted ground truth").count() >= 1
            page.wait_for_timeout(1000)
            page.screenshot(path=str(OUTPUT / "e2e_planted.png"), full_page=True)
            page.locator("[data-testid='stSidebarNavLink']").nth(2).click()  # token explorer
            page.get_by_text("◇ marks the true edges").first.wait_for(
                state="visible", timeout=RUN_TO_CHART_S * 1000
            )
            page.locator(CHART).first.wait_for(state="visible")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(OUTPUT / "e2e_planted_tokens.png"))
            assert page.locator("[data-testid='stException']").count() == 0
            assert page.locator("[data-testid='stAlertContentError']").count() == 0
        finally:
            browser.close()
    assert "Traceback" not in log.read_text()
