#!/usr/bin/env python
"""The joint ablation: its cost against the single-connection pass, and its figures on the
bundled default, in one run.

1. **Cost**, side by side (interleaved repeats, medians): ``ablate_activations`` (the
   single-connection pass) and ``joint_curves`` (every order's curve, which also gives the
   three sets at any ε) on the same tokens, on the bundled default's layer 0 and on the
   research shapes of ``bench_ablation.py`` (random Pythia-70m-sized MLP, d_sae 16384, k 32;
   fewer tokens, the joint pass is ~100× the single one there). With the MLP rows per token
   of each (k_in for the single pass, 1 + (k_in − 1)(1 + 3 k_out) for the curves).
2. **Figures** on the bundled default's held-out sample (``heldout_tokens.safetensors``,
   BOS left out), every layer and kind, unit and zero modes, ε 0.01: the single-
   connection ratio, the sets removed together (mean |diff|, share of j's activation, exit
   share), and the faithfulness score with its 95% token-bootstrap interval.

    python benchmarks/bench_joint.py                      # ~1,000 tokens per figure
    python benchmarks/bench_joint.py --tokens 200 --repeats 2 --skip research   # quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_ablation import RESEARCH, build  # noqa: E402

from jsae.ablation import AblationConfig, ablate_activations  # noqa: E402
from jsae.analysis import joint_curves, joint_statistics  # noqa: E402
from jsae.analysis.joint import PER_FEATURE_ORDERS  # noqa: E402
from jsae.demo.measure import load_heldout_sample  # noqa: E402
from jsae.demo.settings import HELDOUT_FILE  # noqa: E402
from jsae.loading import DEMO_DIR, load_source  # noqa: E402
from jsae.prompt import mlp_inputs  # noqa: E402
from jsae.sandwich import Sandwich  # noqa: E402
from jsae.table import DEFAULT_EPS  # noqa: E402


def rows_per_token(k_in: int, k_out: int) -> tuple[int, int]:
    return k_in, 1 + (k_in - 1) * (1 + len(PER_FEATURE_ORDERS) * k_out)


def heldout_inputs(source, layer: int, kind: str, tokens: int) -> tuple[torch.Tensor, int]:
    """MLP inputs of the held-out sample's first ``tokens`` positions (BOS left out)."""
    model = source.model_for(layer, kind)
    sample = load_heldout_sample(DEMO_DIR / HELDOUT_FILE)
    xs, n = [], 0
    for row in sample:
        x = mlp_inputs(model, row, layer)[1:]
        xs.append(x)
        n += len(x)
        if n >= tokens:
            break
    return torch.cat(xs)[:tokens], len(xs)


def side_by_side(sandwich: Sandwich, x: torch.Tensor, repeats: int) -> dict:
    config = AblationConfig(mode="zero")
    times: dict[str, list[float]] = {"single": [], "joint": []}
    runs = {
        "single": lambda: ablate_activations(sandwich, x, config),
        "joint": lambda: joint_curves(sandwich, x, config),
    }
    for fn in runs.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    single, joint = (statistics.median(times[n]) for n in ("single", "joint"))
    rows = rows_per_token(sandwich.pair.k_in, sandwich.pair.k_out)
    return {
        "tokens": len(x),
        "k": sandwich.pair.k_in,
        "single_s": single,
        "joint_s": joint,
        "joint_over_single": joint / single,
        "rows_ratio": rows[1] / rows[0],
        "single_ms_per_token": 1e3 * single / len(x),
        "joint_ms_per_token": 1e3 * joint / len(x),
    }


def figures(source, tokens: int, n_bootstrap: int) -> list[dict]:
    out = []
    for layer in source.layers("jsae"):
        for kind in source.kinds:
            if layer not in source.pairs.get(kind, {}):
                continue
            pair = source.pair(layer, kind)
            x, _ = heldout_inputs(source, layer, kind, tokens)
            sandwich = Sandwich(source.model_for(layer, kind), pair)
            for mode in ("unit", "zero"):
                config = AblationConfig(mode=mode)
                single = ablate_activations(sandwich, x, config)
                important = single.jacobian.abs() > DEFAULT_EPS
                diff = single.diff.abs()
                ratio = float(diff[important].mean() / diff[~important].mean())
                joint = joint_statistics(
                    joint_curves(sandwich, x, config), DEFAULT_EPS, n_bootstrap=n_bootstrap
                )
                row = {"layer": layer, "pair": kind, "mode": mode, "tokens": len(x)}
                row["single_ratio"] = ratio
                for s in joint.sets.itertuples(index=False):
                    row[f"{s.set}_size"] = s.mean_size
                    row[f"{s.set}_abs_diff"] = s.mean_abs_diff
                    row[f"{s.set}_share"] = s.mean_share
                    row[f"{s.set}_exit"] = s.exit_share
                row["score"], (row["score_lo"], row["score_hi"]) = joint.score, joint.score_ci
                out.append(row)
                print(
                    f"  layer {layer} {kind:<10} {mode:<4}  ratio {ratio:5.2f}  "
                    f"unimportant ({row['unimportant_size']:4.1f} inputs) "
                    f"{row['unimportant_abs_diff']:.3f} = {row['unimportant_share']:5.1%} "
                    f"exit {row['unimportant_exit']:5.1%} | important {row['important_abs_diff']:.3f} "
                    f"= {row['important_share']:5.1%} | random {row['random_abs_diff']:.3f} "
                    f"= {row['random_share']:5.1%} | score {joint.score:+.2f} "
                    f"[{row['score_lo']:+.2f}, {row['score_hi']:+.2f}]",
                    flush=True,
                )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1000, help="held-out tokens per figure")
    parser.add_argument("--research-tokens", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--skip", nargs="*", default=[], choices=["research", "figures"])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    report: dict = {"torch_threads": torch.get_num_threads()}
    source = load_source("demo")
    print(f"cost, side by side (median of {args.repeats} interleaved repeats, zero mode):")
    x, _ = heldout_inputs(source, 0, "jsae", args.tokens)
    cost = {"bundle": side_by_side(Sandwich(source.model, source.pair(0, "jsae")), x, args.repeats)}
    if "research" not in args.skip:
        setup = build(RESEARCH, 0, "cpu", torch.float32, args.research_tokens)
        cost["research"] = side_by_side(setup.sandwich, setup.x, args.repeats)
    for name, c in cost.items():
        print(
            f"  {name:<8} {c['tokens']} tokens, k {c['k']}: single {c['single_ms_per_token']:.3g} "
            f"ms/token, joint curves {c['joint_ms_per_token']:.3g} ms/token, "
            f"joint ÷ single {c['joint_over_single']:.1f}× (MLP rows per token "
            f"{c['rows_ratio']:.0f}×)"
        )
    report["cost"] = cost
    if "figures" not in args.skip:
        print(f"\nbundled default, held-out sample, ε {DEFAULT_EPS:g} (removed together):")
        report["figures"] = figures(source, args.tokens, args.bootstrap)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
