"""App-level figures on the bundled default: cold start (import + load_source("demo"), in a
fresh process, 3 times) and Run to results for a 200-token prompt (median of 5).

    python benchmarks/bench_app.py
"""

import statistics
import subprocess
import sys
import time

cold = []
for _ in range(3):
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; t=time.perf_counter(); import jsae; from jsae.loading import load_source; s=load_source('demo'); print(time.perf_counter()-t)",
        ],
        capture_output=True,
        text=True,
    )
    cold.append(float(out.stdout.strip().splitlines()[-1]))
from jsae import ablate
from jsae.loading import load_source
from jsae.prompts import DEFAULT_PROMPTS
from jsae.sandwich import Sandwich

src = load_source("demo")
text = " ".join(DEFAULT_PROMPTS.values()) * 3
pair = src.pair(1, "jsae")
sw = Sandwich(src.model, pair)
r = ablate(src.model, pair, text, max_tokens=201, sandwich=sw)
runs = []
for _ in range(5):
    t = time.perf_counter()
    r = ablate(src.model, pair, text, max_tokens=201, sandwich=sw)
    runs.append(time.perf_counter() - t)
t = time.perf_counter()
ablate(src.model, pair, text, max_tokens=201)
first = time.perf_counter() - t
print(
    f"cold start (import + load_source('demo')) median {statistics.median(cold):.2f} s of {cold}; Run->results 200 tokens: median {statistics.median(runs) * 1e3:.0f} ms (cached sandwich), {first * 1e3:.0f} ms incl. building the sandwich; {r.n_tokens} tokens, {len(r.table):,} connections"
)
