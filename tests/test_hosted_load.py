"""Load test of hosted mode: `streamlit run` with JSAE_HOSTED=1 on loopback, eight concurrent
browser sessions (separate Chromium contexts) each running a different prompt.

Checks that every session shows exactly the numbers the package computes for its prompt
alone, that none errors, that the health endpoint answers throughout and that the server's
memory stays bounded. Bounded in count (8 sessions, one run each) and time; loopback only.
Figures (p50/p95 time to results, peak memory) go to test-output/load_test.json.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from jsae import explore
from jsae.loading import load_source, save_source
from jsae.stats import summarize
from jsae.table import split
from tests.helpers import tiny_model, tiny_pair
from tests.test_e2e_browser import CHROMIUM, CHROMIUM_ARGS, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "test-output"
SESSIONS = 8
RESULTS_S = 180
MEMORY_LIMIT = 3 * 2**30  # the server process tree, tiny source, 8 sessions
PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def f(x):\n    return x + 1",
    "- apples\n- pears\n- more apples",
    "Alice: hi!\nBob: hello, Alice.",
    "A sparse autoencoder reads the MLP.",
    "the the the the the the the",
    "Bob: pears? Alice: apples, please.",
    "return the quick brown fox",
]


class Watcher(threading.Thread):
    """Polls /_stcore/health and samples the server tree's memory until stopped."""

    def __init__(self, url: str, pid: int):
        super().__init__(daemon=True)
        self.url, self.proc = url, psutil.Process(pid)
        self.stop = threading.Event()
        self.health_failures: list[str] = []
        self.polls = 0
        self.peak_rss = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=5) as r:
                    if r.status != 200:
                        self.health_failures.append(f"status {r.status}")
            except OSError as err:
                self.health_failures.append(str(err))
            self.polls += 1
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            self.stop.wait(0.5)


@pytest.fixture
def hosted_server(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's Chromium with `make browser`")
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    model = tiny_model(n_ctx=128)
    source = str(save_source(tmp_path / "src", model, {"jsae": {1: tiny_pair(model, 1)}}))
    env = {
        **os.environ,
        "JSAE_HOSTED": "1",
        "JSAE_ALLOWED_SOURCES": source,
        "JSAE_MAX_CONCURRENT": "2",
        explore.DEFAULT_SOURCE_ENV: source,
    }
    with streamlit_server(env, tmp_path) as (url, proc, log):
        yield url, source, proc, log


def expected_metrics(source_dir: str, text: str) -> dict[str, str]:
    """What the page must show for ``text``, computed by the package alone."""
    src = load_source(source_dir)
    key = explore.RunKey(source_dir, None, 1, "jsae", "unit", 1.0, text)
    summary = summarize(split(explore.run_ablation(src, key, max_tokens=512).table, 0.01))
    return {
        "Important connections": f"{int(summary.loc['important', 'connections']):,}",
        "Unimportant connections": f"{int(summary.loc['unimportant', 'connections']):,}",
        "Important mean |diff|": explore.format_number(summary.loc["important", "mean_abs_diff"]),
        "Unimportant mean |diff|": explore.format_number(
            summary.loc["unimportant", "mean_abs_diff"]
        ),
    }


def shown_metric(page, label: str) -> str:
    box = page.locator("[data-testid='stMetric']").filter(has_text=label).first
    return box.locator("[data-testid='stMetricValue']").inner_text().strip()


def test_eight_concurrent_sessions(hosted_server):
    from playwright.sync_api import sync_playwright

    url, source, proc, log = hosted_server
    expected = {text: expected_metrics(source, text) for text in PROMPTS[:SESSIONS]}
    watcher = Watcher(url, proc.pid)
    watcher.start()
    times: list[float] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000
            )
            try:
                pages, starts = [], []
                for text in PROMPTS[:SESSIONS]:  # separate contexts: separate sessions
                    page = browser.new_context(viewport={"width": 1200, "height": 1600}).new_page()
                    page.set_default_timeout(RESULTS_S * 1000)
                    query = urllib.parse.urlencode(
                        {
                            "source": source,
                            "layer": 1,
                            "kind": "jsae",
                            "mode": "unit",
                            "eps": "0.01",
                            "text": text,
                            "run": "1",
                        }
                    )
                    starts.append(time.perf_counter())
                    page.goto(f"{url}/?{query}", wait_until="commit")
                    pages.append(page)
                for page, start in zip(pages, starts, strict=True):
                    page.get_by_text("Important connections").first.wait_for(state="visible")
                    times.append(time.perf_counter() - start)
                for page, text in zip(pages, PROMPTS, strict=False):
                    assert page.locator("[data-testid='stException']").count() == 0
                    assert page.locator("[data-testid='stAlertContentError']").count() == 0
                    shown = {label: shown_metric(page, label) for label in expected[text]}
                    assert shown == expected[text], text
            finally:
                browser.close()
    finally:
        watcher.stop.set()
        watcher.join(timeout=10)
    assert watcher.polls > 0 and not watcher.health_failures, watcher.health_failures[:3]
    assert watcher.peak_rss < MEMORY_LIMIT, watcher.peak_rss
    assert "Traceback" not in log.read_text()
    OUTPUT.mkdir(exist_ok=True)
    figures = {
        "sessions": SESSIONS,
        "max_concurrent": 2,
        "p50_s": statistics.median(times),
        "p95_s": statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0],
        "max_s": max(times),
        "peak_server_rss_mib": watcher.peak_rss / 2**20,
        "health_polls": watcher.polls,
    }
    (OUTPUT / "load_test.json").write_text(json.dumps(figures, indent=2))
