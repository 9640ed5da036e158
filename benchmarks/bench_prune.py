#!/usr/bin/env python
"""Certified pruning of the top-k re-selection: today's engine (pruning off), the pruned
engine and the bare-torch floor, side by side in one run, with the candidate fractions.

For each pair and mode, interleaved repeats after a warm-up (medians, wall clock):

* **off**: ``ablate_activations`` + ``connections_table`` on ``Sandwich(prune=False)``, the
  full scan of every perturbed row's d_sae output pre-activations (today's engine);
* **on**: the same on ``Sandwich()``, the default engine (pruning where a block's sampled
  candidate count says it pays, ``jsae.prune``);
* **floor**: ``bench_ablation.Floor.tight``, the brute force's essential work as bare torch
  ops (no Jacobian, no table);

with the pruned run's ``PruneStats``: the mean fraction of d_sae a row's own bound leaves as
candidates (over the rows whose bound was computed), the exact pre-activations computed as a
fraction of the full scan's, and the rows pruned / heavy / failed; and the exactness of the
pruned table against the full scan's (max |Δ| of every connection's new activation and
pre-activation, bitwise equality, exits and entries equal). Parts (``--only``/``--skip``):
``research``, the random Pythia-70m-shaped pair of ``bench_ablation.py`` (d_model 512,
d_sae 16384, k 32); ``bundle``, the bundled default, held-out tokens, every layer and pair
kind; ``trained`` (with ``--trained DIR``), the wider pairs of ``train_wide_pairs.py``;
``joint``, the joint pass (``joint_curves``) off, default and ``prune_joint=True`` on the
first layer of each; ``memory``, the peak RSS of both engines at the research shapes (a
fresh process each); ``corpus``, tokens/s of ``jsae ablate --dataset`` on the bundle's
held-out documents, pruning on and off.

    python benchmarks/bench_prune.py --trained /tmp/jsae-wide     # everything, ~10 min
    python benchmarks/bench_prune.py --only bundle corpus         # the bundle's rows alone
    python benchmarks/bench_prune.py --quick                      # small shapes, a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import unittest.mock
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

import jsae.corpus.engine as corpus_engine  # noqa: E402
from jsae.ablation import AblationConfig  # noqa: E402
from jsae.analysis import joint_curves  # noqa: E402
from jsae.cli import main as cli_main  # noqa: E402
from jsae.demo.corpus import split_documents, stdlib_documents  # noqa: E402
from jsae.demo.settings import FULL  # noqa: E402
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
    """The joint pass (``joint_curves``) with pruning off, the default engine (its single
    rows pruned, its joint rows not) and ``prune_joint=True`` (the low-rank bound, opt-in)."""
    on = setup.sandwich
    off = Sandwich(setup.model, setup.pair, prune=False)
    opt_in = Sandwich(setup.model, setup.pair, prune_joint=True)
    x = setup.x[:tokens]
    rows = []
    for mode in MODES:
        config = AblationConfig(mode=mode)
        joint_curves(opt_in, x[:1], config)
        opt_in.pruner.stats.reset()
        times = interleaved(
            {
                "off": lambda c=config: joint_curves(off, x, c),
                "on": lambda c=config: joint_curves(on, x, c),
                "joint_on": lambda c=config: joint_curves(opt_in, x, c),
            },
            repeats,
        )
        stats = opt_in.pruner.stats
        want = joint_curves(off, x, config)
        ms = {k: 1e3 * statistics.median(v) / len(x) for k, v in times.items()}
        row = {"pair": name, "mode": mode, "tokens": len(x)}
        row |= {f"{k}_ms_per_token": v for k, v in ms.items()}
        row |= {
            "on_over_off": ms["on"] / ms["off"],
            "joint_on_over_off": ms["joint_on"] / ms["off"],
        }
        row |= {f"joint_on_{k}": v for k, v in fractions(stats).items()}
        for label, sandwich in (("on", on), ("joint_on", opt_in)):
            got = joint_curves(sandwich, x, config)
            row[f"{label}_max_abs_act"] = float((got.act - want.act).abs().max())
            row[f"{label}_bitwise_equal"] = bool(torch.equal(got.act, want.act))
            row[f"{label}_exited_equal"] = bool(torch.equal(got.exited, want.exited))
        rows.append(row)
        print(
            f"  {name:<22} {mode:<4} off {ms['off']:9.2f}  on {ms['on']:9.2f}  prune_joint "
            f"{ms['joint_on']:9.2f} ms/token  on÷off {row['on_over_off']:5.2f}  prune_joint÷off "
            f"{row['joint_on_over_off']:5.2f}  (bound {row['joint_on_bound_fraction']:.3f}, "
            f"computed {row['joint_on_computed_fraction']:.3f})  max|Δ| "
            f"{max(row['on_max_abs_act'], row['joint_on_max_abs_act']):.1e}"
            f"{'' if row['on_exited_equal'] and row['joint_on_exited_equal'] else '  EXITS DIFFER'}",
            flush=True,
        )
    return rows


def corpus(tokens: int, repeats: int) -> list[dict]:
    """Corpus throughput on the bundled default: ``jsae ablate --dataset`` on the bundle's
    held-out documents (the standard library's text, as ``jsae.demo.build`` splits it),
    ``--max-tokens`` tokens, layer 0's JSAE pair; wall clock of the whole command in this
    process (the source's loading included), pruning on (the default) and off (the engine's
    Sandwich built with ``prune=False``), interleaved."""
    docs = stdlib_documents(FULL.max_chars)
    heldout = split_documents(docs, 0, FULL.heldout_fraction, FULL.sae_fraction)["heldout"]
    work = Path(tempfile.mkdtemp(prefix="bench-prune-corpus-"))
    text = work / "heldout.txt"
    text.write_text("\n\n".join(d.text for d in heldout))
    command = ["ablate", "--dataset", str(text), "--max-tokens", str(tokens), "--layer", "0"]
    off = functools.partial(Sandwich, prune=False)
    times: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(repeats + 1):  # round 0 warms up (imports, the source), on 256 tokens
        for label in ("on", "off") if i else ("on",):
            output = work / f"{label}-{i}"
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                t0 = time.perf_counter()
                argv = [*command, "--output", str(output)] + ([] if i else ["--max-tokens", "256"])
                with unittest.mock.patch.object(
                    corpus_engine, "Sandwich", off if label == "off" else Sandwich
                ):
                    cli_main(argv)
                seconds = time.perf_counter() - t0
            if i:
                times[label].append(seconds)
    shutil.rmtree(work)
    rows = []
    for label, values in times.items():
        seconds = statistics.median(values)
        rows.append(
            {
                "prune": label,
                "command": "jsae "
                + " ".join([*command[:2], "HELDOUT.txt", *command[3:]])
                + " --output DIR",
                "tokens": tokens,
                "seconds": seconds,
                "tokens_per_s": tokens / seconds,
            }
        )
        print(
            f"  pruning {label:<3}: {tokens / seconds:8.0f} tokens/s ({seconds:.1f} s)", flush=True
        )
    return rows


PARTS = ("research", "bundle", "trained", "joint", "memory", "corpus")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes: a smoke run")
    parser.add_argument("--tokens", type=int, help="research-shape tokens (858; --quick 48)")
    parser.add_argument("--bundle-tokens", type=int, default=1000)
    parser.add_argument("--research-joint-tokens", type=int, default=2)
    parser.add_argument("--bundle-joint-tokens", type=int, default=32)
    parser.add_argument("--corpus-tokens", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trained", help="a source folder of wider trained pairs")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        help="run these parts only (the bundle's: --only bundle corpus; joint runs on the "
        "pairs of the parts chosen)",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    parser.add_argument("--json", help=f"default {DEFAULT_JSON}, or prune_<parts>.json with --only")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = [p for p in (args.only or PARTS) if p not in args.skip]
    if args.quick:
        parts = [p for p in parts if p not in ("trained", "corpus")]
    if "trained" in parts and not args.trained:
        parts.remove("trained")
    json_path = Path(
        args.json
        or (
            DEFAULT_JSON.with_name(f"prune_{'_'.join(args.only)}.json")
            if args.only
            else DEFAULT_JSON
        )
    )
    shapes = QUICK if args.quick else RESEARCH
    shapes = replace(shapes, tokens=args.tokens or shapes.tokens)
    bundle_tokens = 64 if args.quick else args.bundle_tokens
    report: dict = {
        "meta": {
            "command": " ".join(["bench_prune.py", *(argv if argv is not None else sys.argv[1:])]),
            "parts": parts,
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
    setups: list[tuple[str, Setup, int]] = []  # (name, setup, joint tokens)
    if "research" in parts or ("joint" in parts and not args.only):
        research = build(shapes, 0, "cpu", torch.float32, shapes.tokens)
        setups.append(("random Pythia-shaped", research, args.research_joint_tokens))
    for label, folder in (("bundle", "demo"), ("trained", args.trained)):
        if label not in parts:
            continue
        source = load_source(folder)
        for kind in ("jsae", "plain"):
            for layer in source.layers(kind)[: 1 if args.quick else None]:
                setup = source_setup(source, layer, kind, bundle_tokens)
                joint_tokens = args.bundle_joint_tokens if layer == source.layers(kind)[0] else 0
                setups.append((f"{label} L{layer} {kind}", setup, joint_tokens))
    if setups:
        print("single-connection pass (ablate_activations + table), ms per token:")
        report["single"] = [row for name, s, _ in setups for row in single(name, s, args.repeats)]
    if "joint" in parts and setups:
        print("\njoint pass (joint_curves), ms per token:")
        report["joint"] = [
            row for name, s, n in setups if n for row in joint(name, s, n, args.repeats)
        ]
    if "memory" in parts:
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
    if "corpus" in parts:
        print(f"\ncorpus throughput, the bundled default (median of {args.repeats}):")
        report["corpus"] = corpus(args.corpus_tokens, args.repeats)
    report["meta"]["load_end"] = load()
    print(f"\nload at the end {report['meta']['load_end']}")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
