"""Corpus runs: ``jsae ablate --dataset`` (resumable Parquet shards) and ``jsae corpus-stats``
(the merged summary of a run's shards, at any ε)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from jsae.ablation import AblationConfig
from jsae.cli.options import (
    add_tolerance_arguments,
    add_wandb_arguments,
    check_positive,
    check_wandb,
    check_writable,
    format_decomposition,
    format_joint,
    print_summary,
    tolerance,
    wandb_target,
)
from jsae.corpus import (
    DEFAULT_ENGINE,
    ENGINES,
    CorpusJob,
    RayConfig,
    corpus_joint,
    corpus_stats,
    read_manifest,
    run_corpus,
)
from jsae.errors import InputError
from jsae.pair import DEFAULT_KIND
from jsae.sampler import PairSampler
from jsae.stats import Tolerance
from jsae.table import TABLE_FORMATS, check_eps
from jsae.wandb_log import log_corpus_to_wandb

"""The engine ``--engine`` picks unless told: this process."""


def add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    """``jsae ablate``'s flags for corpus runs (``--dataset``)."""
    corpus = parser.add_argument_group("corpus runs (--dataset)")
    corpus.add_argument(
        "--window-tokens",
        type=int,
        help="tokens per window, BOS included (default: the model's context)",
    )
    corpus.add_argument(
        "--text-column",
        default=CorpusJob.text_column,
        help=f"text column of a HF dataset (default: {CorpusJob.text_column})",
    )
    corpus.add_argument("--split", help="split of a HF DatasetDict (default: train)")
    corpus.add_argument(
        "--shard-tokens",
        type=int,
        help="tokens per Parquet shard (default: about 2 million connections per shard)",
    )
    corpus.add_argument(
        "--max-windows", type=int, help="stop after this many new windows (a quick trial)"
    )
    corpus.add_argument(
        "--engine",
        choices=ENGINES,
        default=DEFAULT_ENGINE,
        help="local: this process; ray: a Ray cluster (RAY_ADDRESS or --ray-address; "
        f"needs pip install 'jsae[ray]'). Default: {DEFAULT_ENGINE}",
    )
    corpus.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS)")
    corpus.add_argument(
        "--ray-workers", type=int, help="engines at once (default: one per GPU or CPU)"
    )
    corpus.add_argument(
        "--ray-gpus-per-worker",
        type=float,
        help="GPUs per engine (default: 1 when the cluster has GPUs, else 0)",
    )


def refuse_corpus_flags(args: argparse.Namespace) -> None:
    """A prompt run given flags that only a corpus run reads is a mistake: say which."""
    corpus_only = [
        flag
        for flag, value in (
            ("--window-tokens", args.window_tokens),
            ("--split", args.split),
            ("--shard-tokens", args.shard_tokens),
            ("--max-windows", args.max_windows),
            ("--ray-address", args.ray_address),
            ("--ray-workers", args.ray_workers),
            ("--ray-gpus-per-worker", args.ray_gpus_per_worker),
        )
        if value is not None
    ] + ([f"--engine {args.engine}"] if args.engine != DEFAULT_ENGINE else [])
    if corpus_only:
        raise InputError(f"{', '.join(corpus_only)} only apply to corpus runs (--dataset).")


def ablate_corpus(
    args: argparse.Namespace,
    eps: float,
    config: AblationConfig,
    tol: Tolerance,
    sampler: PairSampler | None = None,
) -> int:
    """``jsae ablate --dataset``: run (or resume) the corpus job, then print its summary;
    the shards keep the connections ``sampler`` chooses (None: all)."""
    if args.output is None:
        raise InputError("--dataset needs --output DIR: the folder for the Parquet shards.")
    if args.output.suffix.lower().lstrip(".") in TABLE_FORMATS:
        raise InputError(
            f"With --dataset, --output is a folder of shards, not a {args.output.suffix} file."
        )
    check_writable(args.output, "--output", folder=True)
    for value, flag in (
        (args.window_tokens, "--window-tokens"),
        (args.shard_tokens, "--shard-tokens"),
        (args.max_windows, "--max-windows"),
        (args.ray_workers, "--ray-workers"),
    ):
        check_positive(value, flag)
    job = CorpusJob(
        dataset=args.dataset,
        output=args.output,
        source=args.source,
        model=args.model,
        layer=args.layer,
        pair_kind=args.pair or DEFAULT_KIND,
        eps=eps,
        ablation=config,
        window_tokens=args.window_tokens,
        text_column=args.text_column,
        split=args.split,
        max_tokens=args.max_tokens,
        shard_tokens=args.shard_tokens,
        device=args.device,
        joint=args.joint,
        sampler=sampler or PairSampler(),
    )
    ray_config = None
    if args.engine == "ray":
        ray_config = RayConfig(
            address=args.ray_address,
            workers=args.ray_workers,
            gpus_per_worker=args.ray_gpus_per_worker,
        )
    bar = tqdm(
        total=args.max_tokens,
        unit="tok",
        desc="ablating corpus",
        disable=args.no_progress,
        file=sys.stderr,
    )

    def progress(done: int, total: int | None) -> None:
        bar.n = done
        bar.refresh()

    try:
        run = run_corpus(
            job,
            engine=args.engine,
            ray_config=ray_config,
            progress=progress,
            max_windows=args.max_windows,
        )
    except KeyboardInterrupt:
        bar.close()
        print(
            f"interrupted: finished shards are kept in {args.output}; rerun the same command "
            "to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        bar.close()
    manifest = run.manifest
    cfg = manifest.config
    print(
        f"source {args.source} · layer {cfg['layer']} · {cfg['pair']} pair · mode {cfg['mode']} · "
        f"ε = {eps:g} · windows of {cfg['window_tokens']} tokens\n"
        f"this run: {run.tokens:,} tokens in {run.windows:,} windows, {run.rows:,} connections, "
        f"{run.shards} shards, {run.seconds:.1f} s ({run.tokens_per_second:,.0f} tokens/s)\n"
        f"in {args.output}: {manifest.tokens:,} tokens, {manifest.rows:,} connections, "
        f"{len(manifest.shards)} shards"
        + ("" if run.finished else " (not finished: rerun the same command to continue)")
    )
    print_sampler(cfg)
    stats = corpus_stats(args.output, eps, tol)
    print_corpus_summary(stats)
    print_corpus_joint(args.output, cfg, eps)
    if args.wandb:
        print(
            log_corpus_to_wandb(args.output, stats, run=run, target=wandb_target(args)).describe()
        )
    return 0


def print_sampler(cfg: dict) -> None:
    """Which connections a run's shards keep, when not all (the manifest records it)."""
    sampler = PairSampler.of(cfg)
    if sampler.how != "all":
        joint = "; removed together: every input" if cfg.get("joint") else ""
        print(f"connections kept: {sampler.describe()}{joint}")


def print_corpus_summary(stats) -> None:
    """The merged summary of a run's shards, and which figures are read off the histogram."""
    print()
    print_summary(stats.summary(), stats.tolerance)
    print("\nwhere the movement comes from (top-k exits: the output feature left the top k):")
    print(format_decomposition(stats.decomposition()))
    print(f"mean |diff| important / unimportant without exits: {stats.ratio_without_exits():.3g}")
    print(
        "median and 99th pct |diff| are read off a log-spaced histogram (within ~2.3%); the "
        "other figures are exact"
    )


def print_corpus_joint(output: Path, cfg: dict, eps: float) -> None:
    """A ``--joint`` run's merged joint statistics, at the run's ε."""
    joint = corpus_joint(output)
    if joint is None:
        return
    note = "" if eps == cfg["eps"] else f" (not --eps {eps:g}: the joint sets are exact sums)"
    print(
        f"\nremoved together, at the run's ε = {cfg['eps']:g}{note}; merged exactly over the "
        f"shards, {joint.n_tokens:,} tokens (no interval: a bootstrap does not merge):"
    )
    print(format_joint(joint))


def add_stats_parser(sub: argparse._SubParsersAction, name: str) -> None:
    cs = sub.add_parser(
        name,
        help="summarize a corpus run's shards (at any eps)",
        description="Stream every finished shard of a `jsae ablate --dataset` output folder "
        "and print the merged summary. Count, means, within-tolerance and the ratio are exact; "
        "the median and 99th percentile of |diff| come from a fixed log-spaced histogram "
        "(within about 2.3% of the exact value).",
    )
    cs.add_argument("output", type=Path, help="the folder `jsae ablate --dataset` wrote")
    cs.add_argument("--eps", type=float, help="|J| threshold (default: the run's)")
    add_tolerance_arguments(cs)
    cs.add_argument(
        "--histogram", action="store_true", help="also print the |diff| histogram's bins"
    )
    add_wandb_arguments(cs)


def cmd_corpus_stats(args: argparse.Namespace) -> int:
    check_wandb(args)
    manifest = read_manifest(args.output)
    cfg = manifest.config
    eps = check_eps(cfg["eps"] if args.eps is None else args.eps)
    stats = corpus_stats(args.output, eps, tolerance(args))
    print(
        f"{args.output}: source {cfg['source']} · layer {cfg['layer']} · {cfg['pair']} pair · "
        f"mode {cfg['mode']} · ε = {eps:g}\n{manifest.tokens:,} tokens in "
        f"{manifest.windows:,} windows, {manifest.rows:,} connections, "
        f"{len(manifest.shards)} shards"
    )
    print_sampler(cfg)
    print_corpus_summary(stats)
    print_corpus_joint(args.output, cfg, eps)
    if args.histogram:
        print("\n|diff| histogram (non-empty bins):")
        print(stats.histogram("abs").to_string(index=False))
    if args.wandb:
        print(log_corpus_to_wandb(args.output, stats, target=wandb_target(args)).describe())
    return 0
