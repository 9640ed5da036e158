#!/usr/bin/env python
"""Issue 12's variant table: one layer's pair trained with each objective, judged on held-out text.

Every row trains a pair around one block of the bundled default's language model (the model
its pairs were trained on) on the SAE split of ``jsae train-demo``'s corpus (the standard
library's text, dealt with seed 0 as :func:`jsae.demo.build.build_demo` deals it, tokenized
by the bundle's tokenizer), at the demo's scale (d_sae, k, batch, the layer's steps and dead
window), and measures it on the bundle's held-out sample (16 sequences, BOS left out):

* :func:`jsae.demo.measure.measure_pair` without its ablation: EV in/out, output features that
  never fire (``unfired_out``), the output code's within-token CV, fraction |J| > 0.01;
* the ``unit``-mode single-connection table: the ratio of mean |diff| important / unimportant
  at ε 0.01 and the ROC AUC of |J| for |diff| > 0.1 (:func:`jsae.analysis.effect_statistics`),
  the ratio at the matched fraction (:func:`jsae.analysis.matched_fraction`: every row split
  at its own top f by |J|, f the reference row's fraction at ε 0.01, the package's rule with
  the reference as the ``jsae`` kind) and the plain row's ratio at this row's own fraction;
* the joint ablation (``zero`` mode, the first ``--joint-tokens`` held-out tokens):
  faithfulness score and the unimportant set's mean share of j's activation moved.

A row is ``OBJECTIVE:λ[:key=value...]`` (``v1`` is ``BUNDLE_V1`` at the first bundle's
settings, which reproduces its pairs; other objectives use the research defaults at the
demo's scale with the demo's learning rate unless a ``key=value`` says), or ``bundle:KIND``,
a kind of today's bundled default exactly as ``jsae train-demo`` trains it
(:func:`jsae.demo.build.pair_config`, penalty on 512 tokens per batch)::

    python benchmarks/train_variants.py v1:0 v1:25 research:0 research:1 warm_start:4
    python benchmarks/train_variants.py bundle:plain bundle:jsae bundle:normalized
    python benchmarks/train_variants.py --table          # the table from the saved rows

Results are merged into ``--json`` row by row (so rows can run in separate invocations); the
per-connection |J|, |diff| and exits go to ``--cache`` for the matched-fraction columns.
``--train-only`` times the rows' training (wall-clock and this process's CPU seconds) and
saves nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jsae.ablation import AblationConfig, ablate_activations  # noqa: E402
from jsae.analysis import (  # noqa: E402
    effect_statistics,
    joint_curves,
    joint_statistics,
    matched_fraction,  # noqa: E402
)
from jsae.demo.build import pair_config  # noqa: E402
from jsae.demo.corpus import split_documents, stdlib_documents  # noqa: E402
from jsae.demo.measure import load_heldout_sample, measure_pair  # noqa: E402
from jsae.demo.settings import FULL, HELDOUT_FILE  # noqa: E402
from jsae.loading import DEMO_DIR, load_source  # noqa: E402
from jsae.prompt import mlp_activations  # noqa: E402
from jsae.sandwich import Sandwich  # noqa: E402
from jsae.table import DEFAULT_EPS, connection_columns  # noqa: E402
from jsae.train import PairTrainingConfig, tokenize_documents, train_pair  # noqa: E402
from jsae.train.config import BUNDLE_V1, OBJECTIVES  # noqa: E402

SEED = 0
REFERENCE = "research:1"
"""The matched fraction's reference row: the research objective at its authors' λ rule,
0.5·k²/d_model = 0.5·16²/128 = 1 at the demo's scale."""
PLAIN = "research:0"
"""The plain pair (λ = 0) whose ratio each row is compared with at the row's own fraction."""
COLUMNS = (
    "row", "objective", "λ", "EV in", "EV out", "dead out (train)", "unfired out",
    "output CV", "frac \\|J\\|>0.01", "ratio", "ratio at matched f", "plain ratio at same f",
    "AUC", "joint score", "unimportant set share", "train s",
)  # fmt: skip


FLOAT_KEYS = ("lr", "warm_start_fraction", "max_grad_norm", "aux_coefficient", "decay_fraction")
STR_KEYS = ("b_dec_init", "encoder_init")
BOOL_KEYS = ("apply_b_dec_to_input", "skip_bos")


def parse_row(spec: str) -> tuple[str, float, dict]:
    """``OBJECTIVE:λ[:key=value...]`` -> (objective, λ, overrides); ``bundle:KIND`` -> the
    bundled default's kind's objective and λ (its own settings are ``row_config``'s)."""
    if spec.startswith("bundle:"):
        recipe = {r.name: r for r in FULL.kinds}[spec.split(":", 1)[1]]
        overrides = dict(recipe.overrides)
        return overrides.get("objective", "research"), recipe.coefficient(1), {}
    objective, lam, *rest = spec.split(":")
    overrides: dict[str, object] = {}
    for item in rest:
        key, value = item.split("=")
        if key in BOOL_KEYS:
            overrides[key] = value in ("1", "true", "True")
            continue
        kind = float if key in FLOAT_KEYS else str if key in STR_KEYS else int
        overrides[key] = None if value == "None" else kind(value)
    return objective, float(lam), overrides


def v1_config(layer: int, lam: float) -> PairTrainingConfig:
    """How the first bundle trained layer ``layer``'s pairs (``BUNDLE_V1`` at its settings)."""
    steps = FULL.for_layer("sae_steps", layer)
    return PairTrainingConfig(
        **BUNDLE_V1,
        layer=layer,
        d_sae=FULL.d_sae,
        k=FULL.k,
        jacobian_coefficient=lam,
        lr=FULL.for_layer("sae_lr", layer),
        batch_tokens=FULL.sae_batch_tokens,
        steps=steps,
        seed=SEED,
        context_size=FULL.n_ctx,
        jacobian_tokens=FULL.jacobian_tokens,
        dead_window_tokens=FULL.for_layer("dead_window_tokens", layer),
        aux_k=FULL.for_layer("aux_k", layer),
        warmup_steps=min(50, steps // 10),
    )


def row_config(spec: str, layer: int, steps: int | None) -> PairTrainingConfig:
    if spec.startswith("bundle:"):
        # a kind of the bundled default exactly as jsae train-demo trains it
        recipe = {r.name: r for r in FULL.kinds}[spec.split(":", 1)[1]]
        config = pair_config(FULL, layer, recipe, SEED)
        return config if steps is None else dataclasses.replace(config, steps=steps)
    objective, lam, overrides = parse_row(spec)
    if objective == "v1":
        config = v1_config(layer, lam)
        return config if steps is None else dataclasses.replace(config, steps=steps)
    settings = dict(
        layer=layer,
        d_sae=FULL.d_sae,
        k=FULL.k,
        jacobian_coefficient=lam,
        objective=objective,
        lr=FULL.for_layer("sae_lr", layer),
        batch_tokens=FULL.sae_batch_tokens,
        steps=steps or FULL.for_layer("sae_steps", layer),
        seed=SEED,
        context_size=FULL.n_ctx,
        dead_window_tokens=FULL.for_layer("dead_window_tokens", layer),
    )
    return PairTrainingConfig(**{**settings, **overrides})


def sae_tokens(model, cache: Path) -> torch.Tensor:
    """The demo build's SAE split, tokenized by the bundle's tokenizer (cached)."""
    path = cache / "sae_tokens.pt"
    if path.is_file():
        return torch.load(path)
    docs = stdlib_documents(FULL.max_chars)
    split = split_documents(docs, SEED, FULL.heldout_fraction, FULL.sae_fraction)["sae"]
    tokens = tokenize_documents(model, [d.text for d in split], FULL.n_ctx)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(tokens, path)
    return tokens


def heldout(model, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = load_heldout_sample(DEMO_DIR / HELDOUT_FILE)
    x, y = mlp_activations(model, tokens, [layer])[layer]
    keep = tokens != model.tokenizer.bos_token_id
    return x[keep].float(), y[keep].float()


def run_row(spec: str, args, model, tokens, x, y) -> dict:
    config = row_config(spec, args.layer, args.steps)
    started = time.perf_counter(), time.process_time()
    result = train_pair(model, tokens, config, progress=not args.quiet)
    train_s = time.perf_counter() - started[0], time.process_time() - started[1]
    pair = result.pair
    with torch.no_grad():
        row = {"spec": spec, "config": dataclasses.asdict(config)}
        row["train_wall_s"], row["train_cpu_s"] = round(train_s[0], 1), round(train_s[1], 1)
        row["dead_out_train"] = result.dead_fraction_out
        row["final"] = result.history[-1]
        row.update(measure_pair(model, pair, x, y, ablation=False))
        sandwich = Sandwich(model, pair)
        connections = ablate_activations(sandwich, x, AblationConfig(mode="unit"))
        table = pd.DataFrame(connection_columns(connections))
        effect = effect_statistics(table, DEFAULT_EPS, n_bootstrap=0)
        row["ratio"], row["auc"] = float(effect.ratio), float(effect.auc)
        np.savez_compressed(
            args.cache / f"{safe(spec)}_l{args.layer}.npz",
            jacobian=table["jacobian"].to_numpy(),
            diff=table["diff"].to_numpy(),
            exited=table["exited"].to_numpy(),
        )
        curves = joint_curves(sandwich, x[: args.joint_tokens], AblationConfig(mode="zero"))
        joint = joint_statistics(curves, DEFAULT_EPS, n_bootstrap=args.bootstrap)
        row["joint_score"], row["joint_score_ci"] = joint.score, list(joint.score_ci)
        row["unimportant_share"] = float(joint.of_set("unimportant")["mean_share"])
        row["joint_tokens"] = curves.n_tokens
    row["measure_wall_s"] = round(time.perf_counter() - started[0] - train_s[0], 1)
    return row


def train_timing(spec: str, args, model, tokens) -> dict:
    """Only train the row: its wall-clock and CPU seconds (nothing is saved)."""
    config = row_config(spec, args.layer, args.steps)
    started = time.perf_counter(), time.process_time()
    train_pair(model, tokens, config, progress=False)
    return {
        "steps": config.steps,
        "train_wall_s": round(time.perf_counter() - started[0], 1),
        "train_cpu_s": round(time.process_time() - started[1], 1),
        "threads": torch.get_num_threads(),
    }


def safe(spec: str) -> str:
    return spec.replace(":", "_").replace("=", "-")


def matched_columns(rows: dict, cache: Path, layer: int, reference: str, plain: str) -> None:
    """Each row's ratio at the reference's fraction, and the plain row's at the row's own."""
    tables = {}
    for spec in rows:
        path = cache / f"{safe(spec)}_l{layer}.npz"
        if path.is_file():
            tables[spec] = pd.DataFrame(dict(np.load(path)))
    if reference in tables:
        matched = matched_fraction(tables, reference=reference).set_index("kind")
        for spec, row in rows.items():
            if spec in matched.index:
                row["ratio_matched"] = float(matched.loc[spec, "ratio"])
                row["matched_fraction"] = float(matched.loc[spec, "fraction"])
    for spec, row in rows.items():
        if plain in tables and spec in tables:
            pair = {spec: tables[spec], "plain": tables[plain]}
            found = matched_fraction(pair, reference=spec).set_index("kind")
            row["plain_ratio_same_fraction"] = float(found.loc["plain", "ratio"])


def markdown(rows: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    order = ("v1", *OBJECTIVES)
    for spec in sorted(rows, key=lambda s: (order.index(parse_row(s)[0]), parse_row(s)[1], s)):
        r = rows[spec]
        objective, lam, _ = parse_row(spec)
        cells = [
            f"`{spec}`", objective, f"{lam:g}", f"{r['ev_in']:.3f}", f"{r['ev_out']:.3f}",
            f"{r['dead_out_train']:.1%}", f"{r['unfired_out']:.1%}", f"{r['output_cv']:.3f}",
            f"{r['frac_abs_j_gt_eps']:.3f}", f"{r['ratio']:.2f}",
            f"{r.get('ratio_matched', float('nan')):.2f}",
            f"{r.get('plain_ratio_same_fraction', float('nan')):.2f}", f"{r['auc']:.3f}",
            f"{r['joint_score']:+.2f} [{r['joint_score_ci'][0]:+.2f}, {r['joint_score_ci'][1]:+.2f}]",
            f"{r['unimportant_share']:.1%}", f"{r['train_wall_s']:.0f} ({r['train_cpu_s']:.0f} CPU)",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", help="OBJECTIVE:λ[:key=value...] (see the docstring)")
    parser.add_argument("--layer", type=int, default=1)
    parser.add_argument("--steps", type=int, help="override the layer's steps (all rows)")
    parser.add_argument("--joint-tokens", type=int, default=500)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks/results/train_variants.json"
    )
    parser.add_argument("--cache", type=Path, default=Path("/tmp/jsae-train-variants"))
    parser.add_argument("--reference", default=REFERENCE, help="the matched fraction's row")
    parser.add_argument("--plain", default=PLAIN, help="the plain row compared at each fraction")
    parser.add_argument("--table", action="store_true", help="only print the saved table")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--train-only", action="store_true", help="time the training only")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rows:
        for spec in args.rows:
            row_config(spec, args.layer, args.steps)  # refuse a bad row before any training
        model = load_source("demo").model
        tokens = sae_tokens(model, args.cache)
        x, y = heldout(model, args.layer)
        print(f"SAE split {tuple(tokens.shape)}; held-out {len(x)} tokens", flush=True)
        for spec in args.rows:
            if args.train_only:
                print(f"{spec}: {json.dumps(train_timing(spec, args, model, tokens))}", flush=True)
                continue
            row = run_row(spec, args, model, tokens, x, y)
            brief = {k: v for k, v in row.items() if k not in ("config", "final")}
            print(f"{spec}: {json.dumps(brief)}", flush=True)
            # read again just before writing: rows may run in several processes at once
            saved = json.loads(args.json.read_text()) if args.json.is_file() else {}
            saved.setdefault(f"layer {args.layer}", {})[spec] = row
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(saved, indent=1, default=str) + "\n")
    saved = json.loads(args.json.read_text()) if args.json.is_file() else {}
    rows = saved.get(f"layer {args.layer}", {})
    matched_columns(rows, args.cache, args.layer, args.reference, args.plain)
    if rows:
        args.json.write_text(json.dumps(saved, indent=1, default=str) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
