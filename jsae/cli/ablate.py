"""``jsae ablate``: both causal-sparsity experiments on a prompt (or, with ``--dataset``, on a
corpus: see ``jsae.cli.corpus``), printed as a summary and optionally written as a table."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from jsae.ablation import MODES, AblationConfig, ProgressCallback, ablate
from jsae.analysis import Analysis, JointCurves, analyse, prompt_curves
from jsae.cli.corpus import ablate_corpus, add_corpus_arguments, refuse_corpus_flags
from jsae.cli.options import (
    add_refresh_argument,
    add_statistics_arguments,
    add_tolerance_arguments,
    add_wandb_arguments,
    check_output,
    check_positive,
    check_wandb,
    format_decomposition,
    format_downstream,
    format_joint,
    format_recovery,
    format_statistics,
    print_summary,
    read_prompt,
    resolve_mode,
    tolerance,
    wandb_target,
)
from jsae.cli.rerun import resolve_settings
from jsae.corpus import CorpusStats
from jsae.errors import InputError
from jsae.loading import (
    DEMO_SOURCE,
    PLANTED_SOURCE,
    WANDB_ARTIFACT,
    Source,
    download_wandb_artifact,
    load_source,
)
from jsae.pair import DEFAULT_KIND, PAIR_KINDS
from jsae.planted import PLANTED_KINDS
from jsae.sampler import PAIR_SAMPLER_LABELS, PAIR_SAMPLERS, PairSampler, sample_result
from jsae.stats import Tolerance, summarize
from jsae.table import DEFAULT_EPS, TABLE_FORMATS, check_eps, table_format, write_table
from jsae.wandb_log import log_to_wandb

MIB = 2**20


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    ab = sub.add_parser(
        name,
        help="run both causal-sparsity experiments on a prompt",
        description="Perturb every active input feature of every token along its decoder "
        "direction, rerun the MLP and the output SAE (top-k included), and compare how much "
        "important (|J| > eps) and unimportant (|J| <= eps) connections moved.",
    )
    ab.add_argument(
        "--source",
        help=f"'{DEMO_SOURCE}' (bundled default), '{PLANTED_SOURCE}' (the planted ground "
        "truth), a local folder, or a W&B artifact entity/project/name:version "
        f"(default: {DEMO_SOURCE})",
    )
    ab.add_argument("--model", help="model for a pair folder: TransformerLens name or folder")
    add_refresh_argument(ab)
    ab.add_argument(
        "--layer", type=int, help="block whose MLP to test (default: first with a pair)"
    )
    prompt = ab.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="the text to analyse")
    prompt.add_argument("--prompt-file", type=Path, help="a UTF-8 text file to analyse")
    prompt.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        help="re-run the settings and prompt a table written by --output records (.parquet, "
        "or .csv with its .csv.json sidecar); flags given beside it win",
    )
    prompt.add_argument(
        "--dataset",
        type=Path,
        help="a corpus to analyse: a .txt file, a folder of .txt files, or a Hugging Face "
        "dataset saved with save_to_disk; writes Parquet shards to --output DIR",
    )
    ab.add_argument("--eps", type=float, help=f"|J| threshold (default: {DEFAULT_EPS:g})")
    ab.add_argument(
        "--mode",
        choices=MODES,
        help="perturbation size s: unit (s=1, the notebook's), zero (s=a_i, removes the "
        f"feature), scale (s=--scale). Default: {AblationConfig.mode}, or scale when --scale "
        "is given",
    )
    ab.add_argument("--scale", type=float, help="perturbation size s (implies --mode scale)")
    ab.add_argument(
        "--pair",
        help=f"which kind of pair: the paper's {', '.join(PAIR_KINDS)}, or the kinds the "
        f"source declares (`jsae info` lists them; '{PLANTED_SOURCE}': "
        f"{', '.join(PLANTED_KINDS.order)}). Default: the source's first ({DEFAULT_KIND} "
        "for the paper's kinds; with --dataset always "
        f"{DEFAULT_KIND} unless given)",
    )
    ab.add_argument(
        "--pairs",
        choices=PAIR_SAMPLERS,
        help="which connections of each token to keep: "
        + "; ".join(f"{k}: {v}" for k, v in PAIR_SAMPLER_LABELS.items())
        + " (default: all). A random token's draw is seeded by --seed and the token's place "
        "(its position; with --dataset its document, window and position), so a corpus gives "
        "the same pairs however it is sharded. --joint still removes every input together: "
        "the sampler chooses only the single-connection table's rows",
    )
    ab.add_argument(
        "--seed", type=int, help=f"the seed of --pairs random (default: {PairSampler.seed})"
    )
    ab.add_argument(
        "--include-bos", action="store_true", default=None, help="also ablate the BOS position"
    )
    budget_mb = AblationConfig.memory_budget / MIB
    ab.add_argument(
        "--memory-budget-mb",
        type=float,
        default=budget_mb,
        help=f"working memory per chunk of tokens, MiB (default: {budget_mb:g})",
    )
    add_tolerance_arguments(ab)
    add_statistics_arguments(ab)
    suffixes = " or ".join(f".{fmt}" for fmt in TABLE_FORMATS)
    ab.add_argument(
        "--output",
        type=Path,
        help=f"write every connection to {suffixes} (with --dataset: a folder of shards; "
        "rerunning the same command resumes it)",
    )
    ab.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    ab.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    ab.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's choice; 1 is often fastest on a busy machine)",
    )
    ab.add_argument(
        "--max-tokens",
        type=int,
        help="ablate at most this many tokens (BOS, which is not ablated unless "
        "--include-bos, does not count): the prompt's first N; with --dataset, stop once N "
        "tokens are ablated, earlier runs into --output included (the last window is "
        "finished, so up to one window more)",
    )
    ab.add_argument(
        "--joint",
        action="store_true",
        help="also remove each output feature's inputs together: its unimportant, important "
        "and a random set, and the faithfulness curves that remove them in order of |J| "
        f"(about {3 * 16}x the single-connection pass at k = 16)",
    )
    add_corpus_arguments(ab)
    add_wandb_arguments(ab)


def _progress_bar(desc: str, args: argparse.Namespace) -> tuple[tqdm, ProgressCallback]:
    bar = tqdm(total=0, unit="tok", desc=desc, disable=args.no_progress, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, progress


def print_analysis(
    model,
    pair,
    result,
    args: argparse.Namespace,
    tol: Tolerance,
    curves: JointCurves | None,
    true_edges: pd.DataFrame | None = None,
) -> Analysis:
    """Where the movement comes from, the ε-free statistics, the connections against the
    true edges (when the source knows them), the pair's health, the joint ablation when
    ``curves`` are given, and the verdict (``jsae.analysis.analyse``; the decomposition is
    the corpus statistics' own)."""
    t = result.table
    decomposition = CorpusStats.of(
        t["jacobian"], t["predicted"], t["diff"], result.eps, tol, exited=t["exited"]
    )
    print("\nwhere the movement comes from (top-k exits: the output feature left the top k):")
    print(format_decomposition(decomposition.decomposition()))
    found = analyse(
        model,
        pair,
        result,
        tau=args.tau,
        tolerance=tol,
        n_bootstrap=args.bootstrap,
        curves=curves,
        downstream=curves is not None,
        true_edges=true_edges,
    )
    print(f"\nstatistics that do not depend on ε ({args.bootstrap} token resamples):")
    print(format_statistics(found.summary(joint=False)))
    if found.edges is not None:
        print("\nagainst the true edges (the source knows the MLP's computation):")
        print(format_recovery(found.edges))
    if found.joint is not None:
        print(
            f"\nremoved together (every active output feature j of every token; mode "
            f"{result.config.mode}; ε = {result.eps:g}):"
        )
        print(format_joint(found.joint))
    if found.downstream is not None:
        print(
            "\nnext-token KL(clean ‖ patched) when each output feature keeps only its top m "
            f"inputs (mean over {found.downstream.n_positions} positions; area over kept "
            f"connections per token, 0 .. {pair.k_in * pair.k_out}):"
        )
        print(format_downstream(found.downstream))
    print(f"\nverdict: {found.verdict.headline}")
    for reason in found.verdict.reasons:
        print(f"  - {reason}")
    return found


def first_layer(source: Source, kind: str) -> int:
    """The first layer with a ``kind`` pair (the error of ``Source.pair`` when none has)."""
    layers = source.layers(kind)
    if not layers:
        source.pair(0, kind)  # raises: no such pairs, naming the kinds there are
    return layers[0]


def cmd_ablate(args: argparse.Namespace) -> int:
    resolve_settings(args)
    eps = check_eps(args.eps)
    mode, scale = resolve_mode(args.mode, args.scale)
    if args.bootstrap < 0:
        raise InputError("--bootstrap must be 0 or more.")
    if not (math.isfinite(args.memory_budget_mb) and args.memory_budget_mb > 0):
        raise InputError(
            f"--memory-budget-mb must be a positive finite number, got {args.memory_budget_mb:g}."
        )
    config = AblationConfig(
        mode=mode,
        scale=scale,
        include_bos=args.include_bos,
        memory_budget=max(1, int(args.memory_budget_mb * MIB)),
    )
    sampler = PairSampler(args.pairs, args.seed)
    tol = tolerance(args)
    check_wandb(args)
    check_positive(args.max_tokens, "--max-tokens")
    check_positive(args.threads, "--threads")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.refresh and WANDB_ARTIFACT.match(args.source):  # once, before any worker loads it
        download_wandb_artifact(args.source, refresh=True)
    if args.dataset is not None:
        return ablate_corpus(args, eps, config, tol, sampler)
    refuse_corpus_flags(args)
    check_output(args.output)
    text = read_prompt(args) if args.prompt_value is None else args.prompt_value
    source = load_source(args.source, model=args.model, device=args.device)
    kind = args.pair or source.default_kind
    layer = args.layer if args.layer is not None else first_layer(source, kind)
    pair = source.pair(layer, kind)

    model = source.model_for(layer, kind)
    bar, progress = _progress_bar("ablating", args)
    try:
        result = ablate(
            model,
            pair,
            text,
            eps=eps,
            config=config,
            progress=progress,
            max_ablated=args.max_tokens,
            max_tokens=args.max_prompt_tokens,
        )
    finally:
        bar.close()
    if result.prompt.notice:
        print(f"note: {result.prompt.notice}", file=sys.stderr)
    if sampler.how != "all":
        result = sample_result(result, sampler)
        print(f"connections kept: {sampler.describe()}")
    summary = summarize(result.table, tol)
    s_text = {"unit": "s = 1", "zero": "s = a_i", "scale": f"s = {scale:g}"}[mode]
    print(
        f"source {args.source} · layer {layer} · {kind} pair · mode {mode} ({s_text}) · "
        f"ε = {eps:g}\n{result.n_tokens} tokens ablated, {len(result.table):,} connections "
        f"(k_out {pair.k_out} × k_in {pair.k_in} per token)\n"
    )
    print_summary(summary, tol)
    curves = None
    if args.joint:
        if sampler.how != "all":
            print(
                "removed together: every input of every token (the sampler chose only the rows above)"
            )
        bar, progress = _progress_bar("removing together", args)
        try:
            curves = prompt_curves(model, pair, result, progress=progress)
        finally:
            bar.close()
    found = print_analysis(model, pair, result, args, tol, curves, source.true_edges(layer, kind))
    if args.output is not None:
        provenance = result.provenance.replace(source=args.source, model=args.model)
        write_table(result.table, args.output, table_format(args.output), provenance)
        print(f"wrote {len(result.table):,} connections to {args.output}")
    if args.wandb:
        logged = log_to_wandb(
            result,
            source_name=args.source,
            tolerance=tol,
            target=wandb_target(args),
            analysis=found,
        )
        print(logged.describe())
    return 0
