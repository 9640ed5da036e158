"""The ``jsae`` command line: ``jsae ablate``, ``jsae corpus-stats``, ``jsae info``,
``jsae train-demo``.

Errors a user can cause print one line (``error: ...``) and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jsae.errors import InputError, JSAEError
from jsae.table import TABLE_FORMATS, check_eps, table_format, write_table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jsae",
        description="Test whether JSAE Jacobian sparsity reflects causal sparsity in an MLP.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    ab = sub.add_parser(
        "ablate",
        help="run both causal-sparsity experiments on a prompt",
        description="Perturb every active input feature of every token along its decoder "
        "direction, rerun the MLP and the output SAE (top-k included), and compare how much "
        "important (|J| > eps) and unimportant (|J| <= eps) connections moved.",
    )
    ab.add_argument(
        "--source",
        default="demo",
        help="'demo' (bundled default), a local folder, or a W&B artifact "
        "entity/project/name:version (default: demo)",
    )
    ab.add_argument("--model", help="model for a pair folder: TransformerLens name or folder")
    ab.add_argument(
        "--layer", type=int, help="block whose MLP to test (default: first with a pair)"
    )
    prompt = ab.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="the text to analyse")
    prompt.add_argument("--prompt-file", type=Path, help="a UTF-8 text file to analyse")
    prompt.add_argument(
        "--dataset",
        type=Path,
        help="a corpus to analyse: a .txt file, a folder of .txt files, or a Hugging Face "
        "dataset saved with save_to_disk; writes Parquet shards to --output DIR",
    )
    ab.add_argument("--eps", type=float, default=0.01, help="|J| threshold (default: 0.01)")
    ab.add_argument(
        "--mode",
        choices=("unit", "zero", "scale"),
        help="perturbation size s: unit (s=1, the notebook's), zero (s=a_i, removes the "
        "feature), scale (s=--scale). Default: unit, or scale when --scale is given",
    )
    ab.add_argument("--scale", type=float, help="perturbation size s (implies --mode scale)")
    ab.add_argument(
        "--pair", choices=("jsae", "plain"), default="jsae", help="which pair (default: jsae)"
    )
    ab.add_argument("--include-bos", action="store_true", help="also ablate the BOS position")
    ab.add_argument(
        "--memory-budget-mb",
        type=float,
        default=1024,
        help="working memory per chunk of tokens, MiB (default: 1024)",
    )
    ab.add_argument("--atol", type=float, default=0.01, help="tolerance vs −s·J (absolute)")
    ab.add_argument("--rtol", type=float, default=0.1, help="tolerance vs −s·J (relative)")
    ab.add_argument(
        "--output",
        type=Path,
        help="write every connection to .parquet or .csv (with --dataset: a folder of shards; "
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
        help="ablate at most this many tokens of the prompt; with --dataset, stop once this "
        "many tokens are done (earlier runs into --output included)",
    )
    corpus = ab.add_argument_group("corpus runs (--dataset)")
    corpus.add_argument(
        "--window-tokens",
        type=int,
        help="tokens per window, BOS included (default: the model's context)",
    )
    corpus.add_argument(
        "--text-column", default="text", help="text column of a HF dataset (default: text)"
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
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: a Ray cluster (RAY_ADDRESS or --ray-address; "
        "needs pip install 'jsae[ray]'). Default: local",
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
    add_wandb_arguments(ab)

    cs = sub.add_parser(
        "corpus-stats",
        help="summarize a corpus run's shards (at any eps)",
        description="Stream every finished shard of a `jsae ablate --dataset` output folder "
        "and print the merged summary. Count, means, within-tolerance and the ratio are exact; "
        "the median and 99th percentile of |diff| come from a fixed log-spaced histogram "
        "(within about 2.3% of the exact value).",
    )
    cs.add_argument("output", type=Path, help="the folder `jsae ablate --dataset` wrote")
    cs.add_argument("--eps", type=float, help="|J| threshold (default: the run's)")
    cs.add_argument("--atol", type=float, default=0.01, help="tolerance vs −s·J (absolute)")
    cs.add_argument("--rtol", type=float, default=0.1, help="tolerance vs −s·J (relative)")
    cs.add_argument(
        "--histogram", action="store_true", help="also print the |diff| histogram's bins"
    )
    add_wandb_arguments(cs)

    info = sub.add_parser("info", help="list a source's layers and pair kinds")
    info.add_argument("--source", default="demo")
    info.add_argument("--model")

    demo = sub.add_parser("train-demo", help="rebuild the bundled default from scratch")
    demo.add_argument("--output", type=Path, required=True, help="folder to write the bundle to")
    demo.add_argument("--quick", action="store_true", help="a tiny, fast build (for tests)")
    demo.add_argument("--seed", type=int, default=0)
    return parser


def add_wandb_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Weights & Biases")
    group.add_argument(
        "--wandb",
        action="store_true",
        help="log the configuration, summary, histogram and results to W&B (API key from "
        "`wandb login` or WANDB_API_KEY)",
    )
    group.add_argument(
        "--wandb-project", default="jsae-explorer", help="W&B project (default: jsae-explorer)"
    )
    group.add_argument("--wandb-entity", help="W&B entity (default: your default entity)")
    group.add_argument(
        "--wandb-mode",
        choices=("online", "offline"),
        help="online, or offline to upload later with `wandb sync` (default: WANDB_MODE, "
        "else online)",
    )
    group.add_argument("--wandb-dir", type=Path, help="where wandb keeps its local files")


def wandb_options(args: argparse.Namespace) -> dict:
    return {
        "project": args.wandb_project,
        "entity": args.wandb_entity,
        "mode": args.wandb_mode,
        "dir": args.wandb_dir,
    }


def check_wandb(args: argparse.Namespace) -> None:
    """With --wandb, fail before the work when logging could not start (no key online)."""
    if args.wandb:
        from jsae.wandb_log import preflight

        preflight(args.wandb_mode)


def resolve_mode(mode: str | None, scale: float | None) -> tuple[str, float]:
    if scale is None:
        if mode == "scale":
            raise InputError("--mode scale needs --scale S (the perturbation size).")
        return mode or "unit", 1.0
    if mode not in (None, "scale"):
        raise InputError(
            f"--scale sets the perturbation size itself; drop --mode {mode} or drop --scale."
        )
    return "scale", scale


def read_prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        return args.prompt
    try:
        return args.prompt_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"Prompt file {args.prompt_file} does not exist.") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as err:
        raise InputError(f"Prompt file {args.prompt_file} cannot be read as text: {err}") from None


def check_output(path: Path | None) -> None:
    if path is not None:
        table_format(path, what="--output")


def check_positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise InputError(f"{flag} must be a positive integer, got {value}.")


def cmd_ablate(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from jsae.ablation import AblationConfig, ablate
    from jsae.loading import load_source
    from jsae.stats import Tolerance, format_summary, importance_ratio, summarize

    eps = check_eps(args.eps)
    mode, scale = resolve_mode(args.mode, args.scale)
    if not args.memory_budget_mb > 0:
        raise InputError("--memory-budget-mb must be a positive number.")
    config = AblationConfig(
        mode=mode,
        scale=scale,
        include_bos=args.include_bos,
        memory_budget=int(args.memory_budget_mb * 2**20),
    )
    tolerance = Tolerance(atol=args.atol, rtol=args.rtol)
    check_wandb(args)
    check_positive(args.max_tokens, "--max-tokens")
    check_positive(args.threads, "--threads")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.dataset is not None:
        return ablate_corpus(args, eps, config, tolerance)
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
    ] + (["--engine ray"] if args.engine == "ray" else [])
    if corpus_only:
        raise InputError(f"{', '.join(corpus_only)} only apply to corpus runs (--dataset).")
    check_output(args.output)
    text = read_prompt(args)
    source = load_source(args.source, model=args.model, device=args.device)
    layer = args.layer if args.layer is not None else source.layers(args.pair)[0]
    pair = source.pair(layer, args.pair)

    bar = tqdm(total=0, unit="tok", desc="ablating", disable=args.no_progress, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        result = ablate(
            source.model,
            pair,
            text,
            eps=eps,
            config=config,
            progress=progress,
            max_tokens=args.max_tokens,
        )
    finally:
        bar.close()
    if result.prompt.notice:
        print(f"note: {result.prompt.notice}", file=sys.stderr)
    summary = summarize(result.table, tolerance)
    s_text = {"unit": "s = 1", "zero": "s = a_i", "scale": f"s = {scale:g}"}[mode]
    print(
        f"source {args.source} · layer {layer} · {args.pair} pair · mode {mode} ({s_text}) · "
        f"ε = {eps:g}\n{result.n_tokens} tokens ablated, {len(result.table):,} connections "
        f"(k_out {pair.k_out} × k_in {pair.k_in} per token)\n"
    )
    print(format_summary(summary))
    ratio = importance_ratio(summary)
    print(f"\nmean |diff| important / unimportant: {ratio:.3g}")
    print(f"within tolerance: |diff − (−s·J)| <= {tolerance.atol:g} + {tolerance.rtol:g}·|s·J|")
    if args.output is not None:
        write_table(result.table, args.output, table_format(args.output))
        print(f"wrote {len(result.table):,} connections to {args.output}")
    if args.wandb:
        from jsae.wandb_log import log_to_wandb

        logged = log_to_wandb(
            result,
            source_name=args.source,
            tolerance=tolerance,
            **wandb_options(args),
        )
        print(logged.describe())
    return 0


def ablate_corpus(args: argparse.Namespace, eps: float, config, tolerance) -> int:
    from tqdm.auto import tqdm

    from jsae.corpus import CorpusJob, corpus_stats, run_corpus

    if args.output is None:
        raise InputError("--dataset needs --output DIR: the folder for the Parquet shards.")
    if args.output.suffix.lower().lstrip(".") in TABLE_FORMATS:
        raise InputError(
            f"With --dataset, --output is a folder of shards, not a {args.output.suffix} file."
        )
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
        pair_kind=args.pair,
        eps=eps,
        ablation=config,
        window_tokens=args.window_tokens,
        text_column=args.text_column,
        split=args.split,
        max_tokens=args.max_tokens,
        shard_tokens=args.shard_tokens,
        device=args.device,
    )
    ray_config = None
    if args.engine == "ray":
        from jsae.ray_runner import RayConfig

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
    stats = corpus_stats(args.output, eps, tolerance)
    print_corpus_summary(stats)
    if args.wandb:
        from jsae.wandb_log import log_corpus_to_wandb

        print(log_corpus_to_wandb(args.output, stats, run=run, **wandb_options(args)).describe())
    return 0


def print_corpus_summary(stats) -> None:
    from jsae.stats import format_summary, importance_ratio

    summary = stats.summary()
    print()
    print(format_summary(summary))
    print(f"\nmean |diff| important / unimportant: {importance_ratio(summary):.3g}")
    print(
        f"within tolerance: |diff − (−s·J)| <= {stats.tolerance.atol:g} + "
        f"{stats.tolerance.rtol:g}·|s·J|\nmedian and 99th pct |diff| are read off a log-spaced "
        "histogram (within ~2.3%); the other figures are exact"
    )


def cmd_corpus_stats(args: argparse.Namespace) -> int:
    from jsae.corpus import corpus_stats, read_manifest
    from jsae.stats import Tolerance

    check_wandb(args)
    manifest = read_manifest(args.output)
    cfg = manifest.config
    eps = check_eps(cfg["eps"] if args.eps is None else args.eps)
    stats = corpus_stats(args.output, eps, Tolerance(atol=args.atol, rtol=args.rtol))
    print(
        f"{args.output}: source {cfg['source']} · layer {cfg['layer']} · {cfg['pair']} pair · "
        f"mode {cfg['mode']} · ε = {eps:g}\n{manifest.tokens:,} tokens in "
        f"{manifest.windows:,} windows, {manifest.rows:,} connections, "
        f"{len(manifest.shards)} shards"
    )
    print_corpus_summary(stats)
    if args.histogram:
        print("\n|diff| histogram (non-empty bins):")
        print(stats.histogram("abs").to_string(index=False))
    if args.wandb:
        from jsae.wandb_log import log_corpus_to_wandb

        print(log_corpus_to_wandb(args.output, stats, **wandb_options(args)).describe())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from jsae.loading import load_source

    source = load_source(args.source, model=args.model)
    cfg = source.model.cfg
    print(
        f"{args.source}: {cfg.n_layers} layers, d_model {cfg.d_model}, d_mlp {cfg.d_mlp}, "
        f"act_fn {cfg.act_fn}, context {cfg.n_ctx}"
    )
    for kind in source.kinds:
        for layer in source.layers(kind):
            pair = source.pair(layer, kind)
            print(
                f"  {kind:5s} layer {layer}: d_sae {pair.d_sae_in}/{pair.d_sae_out}, "
                f"k {pair.k_in}/{pair.k_out}"
            )
    return 0


def cmd_train_demo(args: argparse.Namespace) -> int:
    from jsae.demo import build_demo

    build_demo(args.output, quick=args.quick, seed=args.seed)
    print(f"wrote the bundle to {args.output}")
    return 0


COMMANDS = {
    "ablate": cmd_ablate,
    "corpus-stats": cmd_corpus_stats,
    "info": cmd_info,
    "train-demo": cmd_train_demo,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except JSAEError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
