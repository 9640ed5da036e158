#!/usr/bin/env python
"""Benchmark the ablation engine at research scale, side by side with the notebook loop and
the bare-torch floor, in one run.

Shapes are the research notebook's: Pythia-70m's MLP (d_model 512, d_mlp 2048, GELU), TopK
SAEs with d_sae 16384 and k 32 on both sides, an 858-token prompt, both experiments at
ε = 0.01. Weights are random and seeded (a 1-layer HookedTransformer with that MLP, sae-lens
TopK SAEs); the MLP inputs are random with unit variance per dimension, like LayerNorm
outputs. Nothing downloads.

Measured, in this order:

1. engine: ``ablate_activations`` + ``connections_table`` on the default ``Sandwich`` (its
   top-k re-selection pruned where it pays: ``benchmarks/bench_prune.py`` sets it beside the
   full scan), ms per token (median of the repeats after a warm-up);
2. the notebook's per-connection loop (one MLP + ``sae_out.encode`` run per connection) on a
   few tokens, per token, and loop ÷ engine; the loop's diffs are checked against the engine's;
3. the floor: the same essential work as bare torch ops (perturbed MLP pre-activations, act,
   W_out, output-SAE encoder matmul, top-k) in row blocks with reused buffers, and engine ÷
   floor; a second, "literal" floor runs the whole MLP (x' @ W_in too) on every perturbed input;
4. memory: each length runs once in a fresh process; baseline RSS after the weights are
   built, the peak RSS of the run (``/proc/self/clear_refs`` resets the high-water mark),
   and the increase minus the size of the results (connections + table);
5. app level on the bundled default (``load_source("demo")``): cold start and Run → results
   for a 200-token prompt; skipped with a line saying so when the bundle is not available.

``--device cuda`` runs 1–4 on the GPU (and ``--dtype bfloat16/float16``, with an accuracy
check against float32); without one it prints "not measured (no CUDA device)".

    python benchmarks/bench_ablation.py                 # full run, a few minutes on 2 cores
    python benchmarks/bench_ablation.py --quick         # small shapes, seconds
    python benchmarks/bench_ablation.py --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sae_lens import TopKSAE, TopKSAEConfig  # noqa: E402
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402

from jsae.ablation import AblationConfig, ablate_activations  # noqa: E402
from jsae.pair import JSAEPair, hook_in_name, hook_out_name  # noqa: E402
from jsae.prompt import Prompt  # noqa: E402
from jsae.sandwich import Sandwich  # noqa: E402
from jsae.table import connections_table  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)  # HookedTransformer's notice
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "latest.json"
EPS = 0.01
GIB = 1 << 30
MIB = 1 << 20
TARGETS = {"loop_over_engine": 300.0, "engine_over_floor": 1.5, "peak_bytes": 1.5 * GIB}
FLOOR_BLOCK_ROWS = 1024


@dataclass(frozen=True)
class Shapes:
    d_model: int
    d_mlp: int
    d_sae: int
    k: int
    tokens: int
    loop_tokens: int
    memory_tokens: tuple[int, ...]
    repeats: int
    d_vocab: int = 64


RESEARCH = Shapes(
    d_model=512,
    d_mlp=2048,
    d_sae=16384,
    k=32,
    tokens=858,
    loop_tokens=2,
    memory_tokens=(214, 429, 858),
    repeats=5,
)
QUICK = Shapes(
    d_model=64,
    d_mlp=256,
    d_sae=1024,
    k=8,
    tokens=48,
    loop_tokens=1,
    memory_tokens=(24, 48),
    repeats=2,
)


# --------------------------------------------------------------------------------------
# Setup: a 1-layer model with Pythia-70m's MLP shapes, a random TopK pair, random inputs


@dataclass
class Setup:
    model: HookedTransformer
    pair: JSAEPair
    sandwich: Sandwich
    x: torch.Tensor  # [tokens, d_model], the MLP inputs of positions 1..tokens
    prompt: Prompt
    positions: torch.Tensor


def _randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def _topk_sae(gen, d_in, d_sae, k, hook, device, dtype) -> TopKSAE:
    """Like tests/helpers.py's ``tiny_sae``: unit-norm-ish decoder rows, small biases."""
    cfg = TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, apply_b_dec_to_input=True)
    cfg.metadata.hook_name = hook
    sae = TopKSAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(_randn(gen, d_in, d_sae, scale=d_in**-0.5))
        sae.W_dec.copy_(_randn(gen, d_sae, d_in, scale=d_in**-0.5))
        sae.b_enc.copy_(_randn(gen, d_sae, scale=0.1))
        sae.b_dec.copy_(_randn(gen, d_in, scale=0.1))
    return sae.to(device=device, dtype=dtype)


def build(
    shapes: Shapes, seed: int, device: str, dtype: torch.dtype, tokens: int, prune: bool = True
) -> Setup:
    gen = torch.Generator().manual_seed(seed)
    cfg = HookedTransformerConfig(
        n_layers=1,
        d_model=shapes.d_model,
        d_mlp=shapes.d_mlp,
        d_head=shapes.d_model // 8,
        n_heads=8,
        n_ctx=max(shapes.tokens, *shapes.memory_tokens) + 1,
        d_vocab=shapes.d_vocab,
        act_fn="gelu",
        normalization_type="LN",
        seed=seed,
        device=device,
        dtype=dtype,
    )
    model = HookedTransformer(cfg)
    model.eval()
    mlp = model.blocks[0].mlp
    with torch.no_grad():  # pre-activations of unit scale, as in a trained MLP
        mlp.W_in.copy_(_randn(gen, shapes.d_model, shapes.d_mlp, scale=shapes.d_model**-0.5))
        mlp.b_in.copy_(_randn(gen, shapes.d_mlp, scale=0.1))
        mlp.W_out.copy_(_randn(gen, shapes.d_mlp, shapes.d_model, scale=shapes.d_mlp**-0.5))
        mlp.b_out.copy_(_randn(gen, shapes.d_model, scale=0.1))
    pair = JSAEPair(
        sae_in=_topk_sae(
            gen, shapes.d_model, shapes.d_sae, shapes.k, hook_in_name(0), device, dtype
        ),
        sae_out=_topk_sae(
            gen, shapes.d_model, shapes.d_sae, shapes.k, hook_out_name(0), device, dtype
        ),
        layer=0,
    )
    x_all = _randn(gen, max(shapes.tokens, *shapes.memory_tokens), shapes.d_model)
    x = x_all[:tokens].to(device=device, dtype=dtype)
    # position 0 is BOS and not ablated, as in jsae.ablate; tokens carry repeating strings
    ids = torch.arange(tokens + 1) % shapes.d_vocab
    strings = [f" tok{i}" for i in ids.tolist()]
    prompt = Prompt(tokens=ids, strings=strings, dropped=0, limit=tokens + 1)
    positions = torch.arange(1, tokens + 1)
    return Setup(model, pair, Sandwich(model, pair, prune=prune), x, prompt, positions)


# --------------------------------------------------------------------------------------
# What is timed


def engine_run(setup: Setup, config: AblationConfig | None = None):
    """What the app does after tokenizing: every connection, then the tidy table."""
    config = config or AblationConfig()
    connections = ablate_activations(setup.sandwich, setup.x, config, setup.positions)
    table = connections_table(connections, setup.prompt.strings, EPS)
    return connections, table


@torch.no_grad()
def notebook_loop(
    setup: Setup, n_tokens: int, max_connections: int | None = None
) -> dict[tuple[int, int, int], float]:
    """The research notebook's loop, as tests/reference.py: one MLP + output-SAE run per
    (token, in, out) connection, unit perturbation. Returns {(token, in, out): diff}."""
    pair, x = setup.pair, setup.x
    mlp = setup.model.blocks[pair.layer].mlp
    diffs = {}
    for t in range(n_tokens):
        xt = x[t]
        in_acts = pair.sae_in.encode(xt)
        out_acts = pair.sae_out.encode(mlp(xt[None, None])[0, 0])
        active_in = torch.topk(in_acts, pair.k_in).indices
        active_out = torch.topk(out_acts, pair.k_out).indices
        for i in active_in.tolist():
            for j in active_out.tolist():
                x_pert = xt - 1.0 * pair.sae_in.W_dec[i]
                new_out = pair.sae_out.encode(mlp(x_pert[None, None])[0, 0])
                diffs[(t, i, j)] = (new_out[j] - out_acts[j]).item()
                if max_connections is not None and len(diffs) >= max_connections:
                    return diffs
    return diffs


class Floor:
    """The essential work as bare torch ops: no bookkeeping, no Jacobian, no table."""

    def __init__(self, setup: Setup):
        pair = setup.pair
        mlp = setup.model.blocks[pair.layer].mlp
        self.act_fn = mlp.act_fn
        self.x = setup.x
        self.k_in, self.k_out = pair.k_in, pair.k_out
        self.W_in, self.b_in = mlp.W_in.detach(), mlp.b_in.detach()
        self.W_out, self.b_out = mlp.W_out.detach(), mlp.b_out.detach()
        self.W_dec_in = pair.sae_in.W_dec.detach()
        self.W_enc_in, self.b_enc_in = pair.sae_in.W_enc.detach(), pair.sae_in.b_enc.detach()
        self.b_dec_in = pair.sae_in.b_dec.detach()
        self.W_enc_out, self.b_enc_out = pair.sae_out.W_enc.detach(), pair.sae_out.b_enc.detach()
        self.b_dec_out = pair.sae_out.b_dec.detach()
        self.dec_in_W_in = setup.sandwich.dec_in_W_in  # W_dec_in @ W_in, built once

    def _in_idx(self) -> torch.Tensor:
        pre = torch.addmm(self.b_enc_in, self.x - self.b_dec_in, self.W_enc_in)
        return torch.topk(pre, self.k_in, dim=-1).indices.reshape(-1)

    @torch.no_grad()
    def tight(self) -> None:
        """Perturbed pre-activations as pre(x) - (W_dec_in @ W_in)[i] (a gather), then act,
        W_out, encoder and top-k per block of rows, the encoder output in one reused buffer."""
        idx = self._in_idx()
        pre = torch.addmm(self.b_in, self.x, self.W_in)
        tok = torch.arange(len(self.x), device=self.x.device).repeat_interleave(self.k_in)
        z = torch.empty(
            min(FLOOR_BLOCK_ROWS, len(idx)),
            self.W_enc_out.shape[1],
            dtype=self.x.dtype,
            device=self.x.device,
        )
        for r0 in range(0, len(idx), FLOOR_BLOCK_ROWS):
            r = slice(r0, r0 + FLOOR_BLOCK_ROWS)
            p = pre.index_select(0, tok[r]).sub_(self.dec_in_W_in.index_select(0, idx[r]))
            y = torch.addmm(self.b_out, self.act_fn(p), self.W_out).sub_(self.b_dec_out)
            zr = z[: len(y)]
            torch.addmm(self.b_enc_out, y, self.W_enc_out, out=zr)
            torch.topk(zr, self.k_out, dim=-1, sorted=False)

    @torch.no_grad()
    def literal(self) -> None:
        """The whole MLP on every perturbed input x' = x - W_dec_in[i], plain ops."""
        idx = self._in_idx()
        tok = torch.arange(len(self.x), device=self.x.device).repeat_interleave(self.k_in)
        for r0 in range(0, len(idx), FLOOR_BLOCK_ROWS):
            r = slice(r0, r0 + FLOOR_BLOCK_ROWS)
            xp = self.x[tok[r]] - self.W_dec_in[idx[r]]
            y = self.act_fn(xp @ self.W_in + self.b_in) @ self.W_out + self.b_out
            z = (y - self.b_dec_out) @ self.W_enc_out + self.b_enc_out
            torch.topk(z, self.k_out, dim=-1, sorted=False)


def _sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    """Wall-clock seconds of fn()."""
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    elapsed = time.perf_counter() - t0
    del out
    return elapsed


# --------------------------------------------------------------------------------------
# Memory, one fresh process per length


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _hwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def results_bytes(connections, table) -> int:
    tensors = sum(t.numel() * t.element_size() for t in vars(connections).values())
    return int(tensors + table.memory_usage(deep=True, index=True).sum())


def _memory_child(
    queue,
    shapes: Shapes,
    seed: int,
    tokens: int,
    device: str,
    dtype_name: str,
    threads: int,
    prune: bool = True,
):
    try:
        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        setup = build(shapes, seed, device, getattr(torch, dtype_name), tokens, prune)
        gc.collect()
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            gpu_base = torch.cuda.memory_allocated()
        baseline = _rss()
        _reset_hwm()
        t0 = time.perf_counter()
        connections, table = engine_run(setup)
        seconds = time.perf_counter() - t0
        peak = _hwm()
        out = {
            "tokens": tokens,
            "connections": len(table),
            "seconds": seconds,
            "baseline_bytes": baseline,
            "peak_bytes": peak,
            "increase_bytes": peak - baseline,
            "results_bytes": results_bytes(connections, table),
        }
        out["increase_minus_results_bytes"] = out["increase_bytes"] - out["results_bytes"]
        if device == "cuda":
            out["gpu_baseline_bytes"] = gpu_base
            out["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()
        queue.put(out)
    except BaseException as exc:  # report, never hang the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


def measure_memory(
    shapes: Shapes,
    seed: int,
    device: str,
    dtype_name: str,
    threads: int,
    prune: bool = True,
    lengths: tuple[int, ...] | None = None,
) -> list[dict]:
    ctx = mp.get_context("spawn")
    runs = []
    for tokens in lengths or shapes.memory_tokens:
        queue = ctx.Queue()
        proc = ctx.Process(
            target=_memory_child,
            args=(queue, shapes, seed, tokens, device, dtype_name, threads, prune),
        )
        proc.start()
        result = queue.get(timeout=600)
        proc.join()
        if "error" in result:
            raise RuntimeError(f"memory run at {tokens} tokens failed: {result['error']}")
        runs.append(result)
    return runs


# --------------------------------------------------------------------------------------
# App level: the bundled default, in a fresh interpreter

APP_SCRIPT = textwrap.dedent(
    """
    import json, statistics, sys, time
    t0 = time.perf_counter()
    import jsae, jsae.loading
    t1 = time.perf_counter()
    try:
        source = jsae.loading.load_source(sys.argv[1])
    except Exception as exc:
        print(json.dumps({"status": f"not measured: bundle not available ({type(exc).__name__}: {exc})"}))
        sys.exit(0)
    t2 = time.perf_counter()
    kind = source.kinds[0]
    layer = source.layers(kind)[0]
    pair = source.pair(layer, kind)
    text = (
        "The quick brown fox jumps over the lazy dog while a sparse autoencoder reads the "
        "MLP of one transformer block, feature by feature, token by token. "
    ) * 40
    runs = []
    for _ in range(4):
        t = time.perf_counter()
        result = jsae.ablate(source.model, pair, text, eps=0.01, max_tokens=200)
        runs.append(time.perf_counter() - t)
    print(json.dumps({
        "status": "measured",
        "import_s": t1 - t0,
        "load_s": t2 - t1,
        "cold_start_s": t2 - t0,
        "kind": kind,
        "layer": layer,
        "prompt_tokens": len(result.prompt.tokens),
        "ablated_tokens": result.n_tokens,
        "connections": len(result.table),
        "first_run_s": runs[0],
        "run_s": statistics.median(runs[1:]),
    }))
    """
)


def measure_app(source: str = "demo") -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", APP_SCRIPT, source],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"status": f"not measured: app run failed ({tail[0]})"}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------------------
# Accuracy of a low-precision run against float32 (cuda only)


def accuracy_check(shapes: Shapes, seed: int, device: str, dtype_name: str, tokens: int) -> dict:
    import pandas as pd

    keys = ["position", "in_feature", "out_feature"]
    frames = {}
    for name in ("float32", dtype_name):
        setup = build(shapes, seed, device, getattr(torch, name), tokens)
        _, table = engine_run(setup)
        frames[name] = table[[*keys, "jacobian", "diff"]]
        del setup
    merged = pd.merge(frames["float32"], frames[dtype_name], on=keys, suffixes=("_32", "_lo"))
    return {
        "tokens": tokens,
        "dtype": dtype_name,
        "shared_connections": len(merged) / max(1, len(frames["float32"])),
        "max_abs_err_diff": float((merged.diff_32 - merged.diff_lo).abs().max()),
        "max_abs_err_jacobian": float((merged.jacobian_32 - merged.jacobian_lo).abs().max()),
        "max_abs_diff_float32": float(merged.diff_32.abs().max()),
    }


# --------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results")
    p.add_argument("--quick", action="store_true", help="small shapes: a smoke run in seconds")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--tokens", type=int, help="prompt length (default 858; --quick 48)")
    p.add_argument("--repeats", type=int, help="timed repeats after the warm-up (default 5)")
    p.add_argument("--loop-tokens", type=int, help="tokens the notebook loop runs on (2)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--app-source", default="demo", help="what load_source reads for the app figures (demo)"
    )
    p.add_argument(
        "--skip", action="append", default=[], choices=["loop", "floor", "memory", "app"]
    )
    args = p.parse_args(argv)
    if args.dtype != "float32" and args.device != "cuda":
        p.error(f"--dtype {args.dtype} needs --device cuda; on the CPU the engine runs float32.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shapes = QUICK if args.quick else RESEARCH
    shapes = replace(
        shapes,
        tokens=args.tokens or shapes.tokens,
        repeats=args.repeats or shapes.repeats,
        loop_tokens=args.loop_tokens or shapes.loop_tokens,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    report: dict = {
        "meta": {
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "quick": args.quick,
            "device": args.device,
            "dtype": args.dtype,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            "eps": EPS,
            "shapes": asdict(shapes),
        }
    }
    if args.device == "cuda":
        if not torch.cuda.is_available():
            report["cuda"] = {"status": "not measured (no CUDA device)"}
            print("cuda: not measured (no CUDA device)")
            write_json(report, args.json)
            return 0
        report["meta"]["gpu"] = torch.cuda.get_device_name()
    dtype = getattr(torch, args.dtype)
    sync = _sync(args.device)
    header(report)

    setup = build(shapes, args.seed, args.device, dtype, shapes.tokens)
    floor = Floor(setup)
    variants: dict[str, Callable[[], object]] = {"engine": lambda: engine_run(setup)}
    if "floor" not in args.skip:
        variants["floor"] = floor.tight
        variants["floor_literal"] = floor.literal
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():  # warm-up
        timed(fn, sync)
    for _ in range(shapes.repeats):  # interleaved, so that load from elsewhere hits all alike
        for name, fn in variants.items():
            times[name].append(timed(fn, sync))
    connections, table = engine_run(setup)
    T = shapes.tokens
    ms = {name: 1e3 * statistics.median(ts) / T for name, ts in times.items()}
    best = {name: 1e3 * min(ts) / T for name, ts in times.items()}
    report["engine"] = {
        "tokens": T,
        "connections": len(table),
        "important": int(table["important"].sum()),
        "unimportant": int((~table["important"]).sum()),
        "ms_per_token": ms["engine"],
        "min_ms_per_token": best["engine"],
        "seconds": [round(t, 4) for t in times["engine"]],
    }
    if "floor" not in args.skip:
        report["floor"] = {
            "ms_per_token": ms["floor"],
            "min_ms_per_token": best["floor"],
            "seconds": [round(t, 4) for t in times["floor"]],
            "literal_ms_per_token": ms["floor_literal"],
            "literal_min_ms_per_token": best["floor_literal"],
            "literal_seconds": [round(t, 4) for t in times["floor_literal"]],
            "block_rows": FLOOR_BLOCK_ROWS,
        }
    row("", "median ms/token", "min")
    row("engine (ablate_activations + table)", f"{ms['engine']:.3f}", f"{best['engine']:.3f}")
    if "floor" in report:
        row("floor (bare torch ops)", f"{ms['floor']:.3f}", f"{best['floor']:.3f}")
        row(
            "floor, literal MLP (x' @ W_in too)",
            f"{ms['floor_literal']:.3f}",
            f"{best['floor_literal']:.3f}",
        )
    if "loop" not in args.skip:
        n = min(shapes.loop_tokens, T)
        timed(lambda: notebook_loop(setup, 1, max_connections=64), sync)  # warm-up
        t0 = time.perf_counter()
        diffs = notebook_loop(setup, n)
        sync()
        loop_s = time.perf_counter() - t0
        first = n * shapes.k * shapes.k  # the engine orders connections by position first
        engine_diffs = {
            (p - 1, i, j): d
            for p, i, j, d in zip(
                connections.position[:first].tolist(),
                connections.in_feature[:first].tolist(),
                connections.out_feature[:first].tolist(),
                connections.diff[:first].tolist(),
                strict=True,
            )
        }
        same_keys = sorted(engine_diffs) == sorted(diffs)
        err = max(abs(engine_diffs.get(key, math.inf) - d) for key, d in diffs.items())
        report["loop"] = {
            "tokens": n,
            "connections": len(diffs),
            "seconds": loop_s,
            "ms_per_token": 1e3 * loop_s / n,
            "same_connections_as_engine": same_keys,
            "max_abs_diff_vs_engine": err,
        }
        row(f"notebook loop ({n} tokens, {len(diffs)} connections)", f"{1e3 * loop_s / n:.1f}")
        row("  loop vs engine: same connections, max |Δdiff|", f"{same_keys}, {err:.2e}")
    report["engine"]["results_bytes"] = results_bytes(connections, table)
    del connections, table, floor, setup, variants
    gc.collect()

    ratios = {}
    if "loop" in report:
        ratios["loop_over_engine"] = report["loop"]["ms_per_token"] / ms["engine"]
    if "floor" in report:
        ratios["engine_over_floor"] = ms["engine"] / ms["floor"]
        ratios["engine_over_floor_min"] = best["engine"] / best["floor"]
        ratios["engine_over_floor_literal"] = ms["engine"] / ms["floor_literal"]
    report["ratios"] = ratios

    if "memory" not in args.skip:
        runs = measure_memory(shapes, args.seed, args.device, args.dtype, torch.get_num_threads())
        report["memory"] = {"runs": runs, "peak_bytes": max(r["peak_bytes"] for r in runs)}
    if args.device == "cuda" and args.dtype != "float32":
        report["accuracy"] = accuracy_check(shapes, args.seed, args.device, args.dtype, min(T, 64))
    if "app" not in args.skip:
        report["app"] = {"source": args.app_source, **measure_app(args.app_source)}
    if args.device == "cpu":
        report["cuda"] = {"status": "not measured (run with --device cuda on a machine with a GPU)"}
    report["targets"] = targets(report)
    summary(report)
    write_json(report, args.json)
    return 0


def targets(report: dict) -> dict:
    out = {}
    ratios = report["ratios"]
    if "loop_over_engine" in ratios:
        value = ratios["loop_over_engine"]
        out["loop_over_engine"] = {"value": value, "target": ">= 300", "met": value >= 300}
    if "engine_over_floor" in ratios:
        value = ratios["engine_over_floor"]
        out["engine_over_floor"] = {"value": value, "target": "<= 1.5", "met": value <= 1.5}
    if "memory" in report:
        value = report["memory"]["peak_bytes"]
        out["peak_bytes"] = {"value": value, "target": "<= 1.5 GiB", "met": value <= 1.5 * GIB}
    return out


def header(report: dict) -> None:
    meta, s = report["meta"], report["meta"]["shapes"]
    print(
        f"jsae ablation benchmark: {meta['device']} {meta['dtype']}, torch {meta['torch']}, "
        f"{meta['threads']} threads, {meta['cpu_count']} CPUs"
    )
    print(
        f"shapes: d_model {s['d_model']}, d_mlp {s['d_mlp']} (gelu), d_sae {s['d_sae']}, "
        f"k {s['k']}/{s['k']}, {s['tokens']} tokens ({s['tokens'] * s['k'] ** 2:,} connections), "
        f"ε {meta['eps']}; medians of {s['repeats']} after a warm-up"
    )
    print()


def row(name: str, value: str, target: str = "", status: str = "") -> None:
    print(f"{name:<52} {value:>22}  {target:<12} {status}")


def summary(report: dict) -> None:
    print()
    for name, t in report["targets"].items():
        value = t["value"]
        shown = f"{value / GIB:.3f} GiB" if name == "peak_bytes" else f"{value:.2f}×"
        status = "met" if t["met"] else "NOT MET"
        if report["meta"]["quick"]:
            status += " (quick shapes; the targets are for the research shapes)"
        row(name.replace("_", " "), shown, t["target"], status)
    if "engine_over_floor_literal" in report["ratios"]:
        row(
            "engine over floor, from the minima",
            f"{report['ratios']['engine_over_floor_min']:.2f}×",
        )
        row("engine over floor literal", f"{report['ratios']['engine_over_floor_literal']:.2f}×")
    if "memory" in report:
        print()
        print(
            f"{'tokens':>7} {'connections':>12} {'run s':>7} {'baseline MiB':>13} {'peak MiB':>9} "
            f"{'increase MiB':>13} {'results MiB':>12} {'increase-results MiB':>21}"
        )
        for r in report["memory"]["runs"]:
            print(
                f"{r['tokens']:>7} {r['connections']:>12,} {r['seconds']:>7.2f} "
                f"{r['baseline_bytes'] / MIB:>13.1f} {r['peak_bytes'] / MIB:>9.1f} "
                f"{r['increase_bytes'] / MIB:>13.1f} {r['results_bytes'] / MIB:>12.1f} "
                f"{r['increase_minus_results_bytes'] / MIB:>21.1f}"
            )
    if "accuracy" in report:
        a = report["accuracy"]
        print(
            f"\naccuracy {a['dtype']} vs float32 ({a['tokens']} tokens): max |Δdiff| "
            f"{a['max_abs_err_diff']:.3e}, max |ΔJ| {a['max_abs_err_jacobian']:.3e}, "
            f"shared connections {a['shared_connections']:.1%}"
        )
    if "app" in report:
        app = report["app"]
        print()
        if app.get("status") != "measured":
            print(f"app ({app['source']}): {app['status']}")
        else:
            print(
                f"app ({app['source']}, {app['kind']} layer {app['layer']}): cold start "
                f"{app['cold_start_s']:.2f} s (import {app['import_s']:.2f} s + load_source "
                f"{app['load_s']:.2f} s); Run → results for a {app['prompt_tokens']}-token prompt: "
                f"{app['run_s']:.3f} s (first run {app['first_run_s']:.3f} s)"
            )
    if report["meta"]["device"] == "cpu":
        print("cuda: not measured (run with --device cuda on a machine with a GPU)")


def write_json(report: dict, path: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    print(f"\nwrote {out}")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


if __name__ == "__main__":
    sys.exit(main())
