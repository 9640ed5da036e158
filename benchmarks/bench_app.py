"""App-level figures on the bundled default.

Engine (the default): cold start of the package (import + ``load_source("demo")``, each in a
fresh process, 3 times) and Run to results for a 200-token prompt (median of 5).

Browser (``--browser``): what a visitor sees, in Debian's Chromium against ``streamlit run``
on loopback, each repeat on a fresh server (median of ``--repeats``): from opening the page
(as soon as the server answers its health check) to the title, the navigation, the "Loading
the model and its JSAE pairs" status, and the Run button (a usable page); the same usable
page counted from the server's start; then from clicking Run on a 195-token prompt to the
first chart visible (the run computed, no cache).

Each ``--variant NAME=ROOT:SCRIPT`` is a checkout and the script ``streamlit run`` starts
(default: this checkout's ``streamlit_app.py``, what ``make app`` runs); with several, their repeats
alternate, so before and after are measured side by side in one run:

    python benchmarks/bench_app.py
    python benchmarks/bench_app.py --browser [--repeats 3] [--page causal_sparsity]
    python benchmarks/bench_app.py --browser --variant before=../old:streamlit_app.py \
        --variant after=.:serve.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLD = (
    "import time; t = time.perf_counter(); import jsae; from jsae.loading import load_source; "
    "load_source('demo'); print(time.perf_counter() - t)"
)
LOADING = "Loading the model and its JSAE pairs"
CHART = "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg"


def engine() -> None:
    cold = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True)
        cold.append(float(out.stdout.strip().splitlines()[-1]))

    from jsae import ablate
    from jsae.example_texts import DEFAULT_PROMPTS
    from jsae.loading import load_source
    from jsae.sandwich import Sandwich

    src = load_source("demo")
    text = " ".join(DEFAULT_PROMPTS.values()) * 3
    pair = src.pair(1, "jsae")
    start = time.perf_counter()
    sandwich = Sandwich(src.model, pair)
    result = ablate(src.model, pair, text, max_tokens=201, sandwich=sandwich)
    first = time.perf_counter() - start
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        result = ablate(src.model, pair, text, max_tokens=201, sandwich=sandwich)
        runs.append(time.perf_counter() - start)
    print(
        f"cold start (import + load_source('demo')): median {statistics.median(cold):.2f} s\n"
        f"Run -> results, {result.n_tokens} tokens ({len(result.table):,} connections, layer 1): "
        f"median {statistics.median(runs) * 1e3:.0f} ms with the app's cached sandwich, "
        f"{first * 1e3:.0f} ms building it first"
    )


LANDMARKS = ("title", "navigation", "loading status", "run button", "Run -> chart")


def _browser_once(page_path: str, text: str, root: Path, script: str) -> dict[str, float]:
    """One fresh server, one cold page: seconds from ``goto`` to each landmark."""
    from urllib.parse import urlencode

    from playwright.sync_api import sync_playwright

    from tests.test_e2e_browser import CHROMIUM, CHROMIUM_ARGS, streamlit_server

    times: dict[str, float] = {}
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        streamlit_server(dict(os.environ), Path(tmp), script=script, root=root) as (url, _, _l),
        sync_playwright() as p,
    ):
        times["server start -> healthy"] = time.perf_counter() - started
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(120_000)
            query = urlencode({"text": text})
            start = time.perf_counter()
            page.goto(f"{url}/{page_path}?{query}", wait_until="commit")
            landmarks = {
                "title": page.locator("h1").first,
                "navigation": page.locator("[data-testid='stSidebarNavLink']").first,
                "run button": page.get_by_role("button", name="Run", exact=True),
            }
            seen_loading = None
            pending = dict(landmarks)
            while pending:
                if seen_loading is None and page.get_by_text(LOADING).count():
                    seen_loading = time.perf_counter() - start
                for name, loc in list(pending.items()):
                    if loc.count() and loc.is_visible():
                        times[name] = time.perf_counter() - start
                        del pending[name]
                page.wait_for_timeout(50)
            if seen_loading is not None:
                times["loading status"] = seen_loading
            times["server start -> run button"] = time.perf_counter() - started
            times["page not found"] = float(page.get_by_text("Page not found").count())
            if times["page not found"]:
                return times  # the dialog blocks the page: nothing to click
            page.get_by_role("button", name="Run", exact=True).click()
            start = time.perf_counter()
            page.locator(CHART).first.wait_for(state="visible")
            times["Run -> chart"] = time.perf_counter() - start
        finally:
            browser.close()
    return times


def browser(repeats: int, page_path: str, variants: dict[str, tuple[Path, str]]) -> None:
    from jsae.example_texts import DEFAULT_PROMPTS

    text = DEFAULT_PROMPTS["Prose"] + " " + DEFAULT_PROMPTS["List"]  # 195 tokens
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for _ in range(repeats):  # alternating: each variant sees the same machine load
        for name, (root, script) in variants.items():
            runs[name].append(_browser_once(page_path, text, root, script))
    print(f"browser, cold server, /{page_path}, 1280x800, median of {repeats}:")
    names = (
        "server start -> healthy",
        *(f"open -> {n}" for n in LANDMARKS),
        "server start -> run button",
    )
    for name, (root, script) in variants.items():
        print(f"{name}: {root}/{script}")
        for label in names:
            key = label.removeprefix("open -> ")
            values = [r[key] for r in runs[name] if key in r]
            if values:
                shown = ", ".join(f"{v:.2f}" for v in values)
                print(f"  {label}: median {statistics.median(values):.2f} s ({shown})")
            else:
                print(f"  {label}: never seen")
        shown = sum(r["page not found"] > 0 for r in runs[name])
        print(f"  'Page not found' shown: {shown} of {repeats}")


def variant(text: str) -> tuple[str, tuple[Path, str]]:
    """``NAME=ROOT:SCRIPT`` as (name, (root, script))."""
    name, _, where = text.partition("=")
    root, _, script = where.rpartition(":")
    if not name or not root or not script:
        raise argparse.ArgumentTypeError(f"expected NAME=ROOT:SCRIPT, got {text!r}")
    return name, (Path(root).resolve(), script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--browser", action="store_true", help="measure in Chromium")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--page", default="causal_sparsity", help="the page's URL path")
    parser.add_argument(
        "--variant",
        type=variant,
        action="append",
        help="NAME=ROOT:SCRIPT, a checkout and the script to serve (repeatable; default: "
        "this checkout's streamlit_app.py)",
    )
    args = parser.parse_args()
    if args.browser:
        default = [("app", (Path(__file__).resolve().parents[1], "streamlit_app.py"))]
        browser(args.repeats, args.page, dict(args.variant or default))
    else:
        engine()


if __name__ == "__main__":
    main()
