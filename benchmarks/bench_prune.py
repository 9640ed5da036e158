#!/usr/bin/env python
"""Certified pruning of the top-k re-selection: today's engine (pruning off), the pruned
engine and the bare-torch floor, side by side in one run, with the candidate fractions.

For each pair and mode, interleaved repeats after a warm-up (medians, wall clock):

* **off**: ``ablate_activations`` + ``connections_table`` on ``Sandwich(prune=False)``, the
  full scan of every perturbed row's d_sae output pre-activations (today's engine);
* **on**: the same on ``Sandwich()`` (pruning where it pays, ``jsae.prune``);
* **floor**: ``bench_ablation.Floor.tight``, the brute force's essential work as bare torch
  ops (no Jacobian, no table);

with the pruned run's ``PruneStats``: the mean fraction of d_sae a row's own bound leaves as
candidates (over the rows whose block tried a bound), the exact pre-activations computed as a
fraction of the full scan's, and the rows pruned / heavy / failed; and the exactness of the
pruned table against the full scan's (max |Δ| of every connection's new activation and
pre-activation, exits and entries equal). Pairs: (a) the random Pythia-70m-shaped pair of
``bench_ablation.py`` (d_model 512, d_sae 16384, k 32); (b) the bundled default, held-out
tokens, every layer and pair kind; (c) with ``--trained DIR``, the wider pairs of
``train_wide_pairs.py``. Then the joint pass (``joint_curves``) on and off, and the peak RSS
of both engines at the research shapes (a fresh process each).

    python benchmarks/bench_prune.py                                  # ~15 min on 2 busy cores
    python benchmarks/bench_prune.py --trained /tmp/jsae-wide         # with the wider pairs
    python benchmarks/bench_prune.py --quick                          # small shapes, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_ablation import (  # noqa: E402
    QUICK,
    RESEARCH,
    Floor,
    Setup,
    build,
    engine_run,
    measure_memory,
)
from bench_joint import heldout_inputs  # noqa: E402

from jsae.ablation import AblationConfig  # noqa: E402
from jsae.analysis import joint_curves  # noqa: E402
from jsae.loading import load_source  # noqa: E402
from jsae.prompt import Prompt  # noqa: E402
from jsae.prune_policy import PruneStats  # noqa: E402
from jsae.sandwich import Sandwich  # noqa: E402

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "prune.json"
MODES = ("unit", "zero")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min) / {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def source_setup(source, layer: int, kind: str, tokens: int) -> Setup:
    """A ``bench_ablation.Setup`` on a source's pair and its held-out tokens."""
    model, pair = source.model_for(layer, kind), source.pair(layer, kind)
    x, _ = heldout_inputs(source, layer, kind, tokens)
    n = len(x)
    ids = torch.arange(n + 1)
    prompt = Prompt(tokens=ids, strings=[f" t{i}" for i in range(n + 1)], dropped=0, limit=n + 1)
    return Setup(model, pair, Sandwich(model, pair), x, prompt, torch.arange(1, n + 1))


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each run, ``repeats`` times in turn after one warm-up each."""
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def fractions(stats: PruneStats) -> dict:
    rows = max(1, stats.rows)
    return {
        "bound_fraction": stats.bound_fraction,
        "computed_fraction": stats.computed_fraction,
        "tried_rows": stats.tried / rows,
        "pruned_rows": stats.pruned_rows / rows,
        "heavy_rows": stats.heavy_rows / rows,
        "fallback_rows": stats.fallback_rows / rows,
        "pruned_blocks": f"{stats.pruned_blocks}/{stats.blocks}",
    }


def exactness(got, want) -> dict:
    """The pruned connections against the full scan's."""
    new = {
        name: float(((getattr(got, name) - getattr(want, name)).abs()).max())
        for name in ("diff", "pre_diff")
    }
    return {
        "max_abs_diff": new["diff"],
        "max_abs_pre_diff": new["pre_diff"],
        "exited_equal": bool(torch.equal(got.exited, want.exited)),
        "entered_equal": bool(torch.equal(got.entered, want.entered)),
        "bitwise_equal": all(
            torch.equal(getattr(got, n), getattr(want, n)) for n in ("diff", "pre_diff")
        ),
    }


def single(name: str, setup: Setup, repeats: int) -> list[dict]:
    """One pair, both modes: off, on and the floor side by side."""
    on = setup
    off = replace(setup, sandwich=Sandwich(setup.model, setup.pair, prune=False))
    floor = Floor(setup)
    rows = []
    for mode in MODES:
        config = AblationConfig(mode=mode)
        stats = on.sandwich.pruner.stats
        runs = {
            "off": lambda c=config: engine_run(off, c),
            "on": lambda c=config: engine_run(on, c),
            "floor": floor.tight,
        }
        runs["on"]()  # the bound's first try, before the counts start
        stats.reset()
        times = interleaved(runs, repeats)
        tokens = len(setup.x)
        ms = {k: 1e3 * statistics.median(v) / tokens for k, v in times.items()}
        got, want = engine_run(on, config)[0], engine_run(off, config)[0]
        row = {
            "pair": name,
            "mode": mode,
            "tokens": tokens,
            "d_model": setup.pair.sae_out.cfg.d_in,
            "d_sae": setup.pair.d_sae_out,
            "k": setup.pair.k_out,
            **{f"{k}_ms_per_token": v for k, v in ms.items()},
            "speedup": ms["off"] / ms["on"],
            "off_over_floor": ms["off"] / ms["floor"],
            "on_over_floor": ms["on"] / ms["floor"],
            **fractions(stats),
            **exactness(got, want),
        }
        rows.append(row)
        print(
            f"  {name:<22} {mode:<4} off {ms['off']:8.3f}  on {ms['on']:8.3f}  floor "
            f"{ms['floor']:8.3f} ms/token  on÷off {ms['on'] / ms['off']:5.2f} "
            f"(×{row['speedup']:.2f})  bound {row['bound_fraction']:.3f}  computed "
            f"{row['computed_fraction']:.3f}  pruned rows {row['pruned_rows']:.2f}  "
            f"max|Δ| {max(row['max_abs_diff'], row['max_abs_pre_diff']):.1e}"
            f"{'' if row['exited_equal'] and row['entered_equal'] else '  EXITS/ENTRIES DIFFER'}",
            flush=True,
        )
    return rows


def joint(name: str, setup: Setup, tokens: int, repeats: int) -> list[dict]:
    """The joint pass on and off, both modes."""
    on = setup.sandwich
    off = Sandwich(setup.model, setup.pair, prune=False)
    x = setup.x[:tokens]
    rows = []
    for mode in MODES:
        config = AblationConfig(mode=mode)
        joint_curves(on, x[:1], config)
        on.pruner.stats.reset()
        times = interleaved(
            {
                "off": lambda c=config: joint_curves(off, x, c),
                "on": lambda c=config: joint_curves(on, x, c),
            },
            repeats,
        )
        stats = on.pruner.stats
        got, want = joint_curves(on, x, config), joint_curves(off, x, config)
        s = {k: statistics.median(v) for k, v in times.items()}
        row = {
            "pair": name,
            "mode": mode,
            "tokens": len(x),
            "off_ms_per_token": 1e3 * s["off"] / len(x),
            "on_ms_per_token": 1e3 * s["on"] / len(x),
            "speedup": s["off"] / s["on"],
            **fractions(stats),
            "max_abs_act": float((got.act - want.act).abs().max()),
            "bitwise_equal": bool(torch.equal(got.act, want.act)),
            "exited_equal": bool(torch.equal(got.exited, want.exited)),
        }
        rows.append(row)
        print(
            f"  {name:<22} {mode:<4} off {row['off_ms_per_token']:9.2f}  on "
            f"{row['on_ms_per_token']:9.2f} ms/token  (×{row['speedup']:.2f})  bound "
            f"{row['bound_fraction']:.3f}  computed {row['computed_fraction']:.3f}  "
            f"max|Δ| {row['max_abs_act']:.1e}{'' if row['exited_equal'] else '  EXITS DIFFER'}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes: a smoke run")
    parser.add_argument("--tokens", type=int, help="research-shape tokens (858; --quick 48)")
    parser.add_argument("--bundle-tokens", type=int, default=1000)
    parser.add_argument("--research-joint-tokens", type=int, default=4)
    parser.add_argument("--bundle-joint-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trained", help="a source folder of wider trained pairs")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["bundle", "joint", "memory"])
    parser.add_argument("--json", default=str(DEFAULT_JSON))
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = QUICK if args.quick else RESEARCH
    shapes = replace(shapes, tokens=args.tokens or shapes.tokens)
    bundle_tokens = 64 if args.quick else args.bundle_tokens
    report: dict = {
        "meta": {
            "command": " ".join(["bench_prune.py", *(argv if argv is not None else sys.argv[1:])]),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_start": load(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "shapes": asdict(shapes),
            "repeats": args.repeats,
        }
    }
    print(
        f"load {report['meta']['load_start']}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; medians of {args.repeats} interleaved repeats\n"
    )
    print("single-connection pass (ablate_activations + table), ms per token:")
    research = build(shapes, 0, "cpu", torch.float32, shapes.tokens)
    rows = single("random Pythia-shaped", research, args.repeats)
    sources = []
    if "bundle" not in args.skip:
        sources.append(("bundle", load_source("demo")))
    if args.trained and not args.quick:
        sources.append(("trained", load_source(args.trained)))
    for label, source in sources:
        for kind in ("jsae", "plain"):
            for layer in source.layers(kind)[: 1 if args.quick else None]:
                setup = source_setup(source, layer, kind, bundle_tokens)
                name = f"{label} L{layer} {kind}"
                rows += single(name, setup, args.repeats)
    report["single"] = rows
    if "joint" not in args.skip:
        print("\njoint pass (joint_curves), ms per token:")
        joints = joint("random Pythia-shaped", research, args.research_joint_tokens, args.repeats)
        for label, source in sources:
            for kind in ("jsae", "plain"):
                layer = source.layers(kind)[0]
                setup = source_setup(source, layer, kind, args.bundle_joint_tokens)
                joints += joint(f"{label} L{layer} {kind}", setup, len(setup.x), args.repeats)
        report["joint"] = joints
    if "memory" not in args.skip:
        print("\npeak RSS at the research shapes (a fresh process each):")
        threads = torch.get_num_threads()
        memory = {}
        for prune in (False, True):
            run = measure_memory(shapes, 0, "cpu", "float32", threads, prune, (shapes.tokens,))[0]
            memory["on" if prune else "off"] = run
            print(
                f"  pruning {'on ' if prune else 'off'}: peak {run['peak_bytes'] / 2**30:.3f} GiB, "
                f"increase minus results {run['increase_minus_results_bytes'] / 2**20:.0f} MiB"
            )
        report["memory"] = memory
    report["meta"]["load_end"] = load()
    print(f"\nload at the end {report['meta']['load_end']}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
