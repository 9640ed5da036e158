"""App-level figures on the bundled default: cold start (import + ``load_source("demo")``,
each in a fresh process, 3 times) and Run to results for a 200-token prompt (median of 5).

    python benchmarks/bench_app.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

COLD = (
    "import time; t = time.perf_counter(); import jsae; from jsae.loading import load_source; "
    "load_source('demo'); print(time.perf_counter() - t)"
)


def main() -> None:
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


if __name__ == "__main__":
    main()
