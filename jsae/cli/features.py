"""``jsae features``: build the feature cards of a source's pairs (``jsae.features``).

Token rows come from ``--dataset`` (a corpus ``jsae.corpus`` reads: a .txt file, a folder of
them, a HF dataset saved to disk; or a ``.safetensors`` of token rows such as a bundle's
held-out sample), else from the source's own held-out sample. Without ``--layer`` or
``--pair`` every layer or kind is built. Rerunning an interrupted command resumes it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from jsae.cli.options import add_refresh_argument, check_positive, check_writable
from jsae.corpus import CorpusJob, open_corpus
from jsae.errors import InputError
from jsae.features import (
    CardSettings,
    FeatureCards,
    cards_root,
    corpus_rows,
    feature_cards,
    heldout_path,
    load_rows,
)
from jsae.loading import DEMO_SOURCE, Source, load_source

DEFAULT_MAX_TOKENS = 1_000_000
"""Tokens read from a dataset unless ``--max-tokens`` says otherwise."""


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    fe = sub.add_parser(
        name,
        help="build feature cards (top contexts, histograms, promoted tokens) for a source",
        description="For every input and output feature of a pair: its top-activating "
        "contexts, an activation histogram, its firing frequency and, for output features, "
        "the tokens its decoder direction promotes through the unembedding. Written as "
        "Parquet into the source's cards/ folder (or --output); rerunning resumes.",
    )
    fe.add_argument("--source", default=DEMO_SOURCE, help=f"(default: {DEMO_SOURCE})")
    fe.add_argument("--model", help="model for a pair folder: TransformerLens name or folder")
    add_refresh_argument(fe)
    fe.add_argument("--layer", type=int, help="the pair's block (default: every layer)")
    fe.add_argument("--pair", help="the kind of pair (default: every kind the source has)")
    fe.add_argument(
        "--dataset",
        type=Path,
        help="a .txt file, a folder of .txt files, a HF dataset saved with save_to_disk, or "
        "a .safetensors of token rows (default: the source's held-out sample)",
    )
    fe.add_argument(
        "--max-tokens",
        type=int,
        help=f"tokens to read, row BOS not counted (default: {DEFAULT_MAX_TOKENS:,} from a "
        "dataset, every row of a token file)",
    )
    fe.add_argument(
        "--context", type=int, help="tokens per row from a dataset (default: the model's)"
    )
    fe.add_argument("--text-column", default=CorpusJob.text_column)
    fe.add_argument("--split", help="split of a HF DatasetDict (default: train)")
    fe.add_argument(
        "--output", type=Path, help="cards folder (default: cards/ in the source's folder)"
    )
    fe.add_argument(
        "--n-top",
        type=int,
        default=CardSettings.n_top,
        help=f"contexts kept per feature (default: {CardSettings.n_top})",
    )
    fe.add_argument(
        "--batch-rows",
        type=int,
        default=CardSettings.batch_rows,
        help=f"token rows per forward pass (default: {CardSettings.batch_rows})",
    )
    fe.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    fe.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    fe.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def token_rows(args: argparse.Namespace, source: Source) -> tuple[torch.Tensor, str]:
    """The rows to build from, and where they came from."""
    check_positive(args.max_tokens, "--max-tokens")
    model = source.model
    if args.dataset is None or args.dataset.suffix == ".safetensors":
        path = args.dataset or heldout_path(source)
        if path is None:
            raise InputError(
                f"{source.name} has no held-out sample; give text to read with --dataset."
            )
        rows = load_rows(path)
        if args.max_tokens is not None:
            body = max(rows.shape[1] - 1, 1)
            rows = rows[: -(-args.max_tokens // body)]
        return rows, str(path)
    context = args.context or model.cfg.n_ctx
    corpus = open_corpus(args.dataset, args.text_column, args.split)
    return corpus_rows(model, corpus, context, args.max_tokens or DEFAULT_MAX_TOKENS), str(
        args.dataset
    )


def cmd_features(args: argparse.Namespace) -> int:
    for value, flag in ((args.threads, "--threads"), (args.context, "--context")):
        check_positive(value, flag)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = CardSettings(
        n_top=args.n_top,
        batch_rows=args.batch_rows,
        checkpoint_rows=args.batch_rows * max(1, CardSettings.checkpoint_rows // args.batch_rows),
    )
    if args.output is not None:
        check_writable(args.output, "--output", folder=True)
    source = load_source(args.source, model=args.model, device=args.device, refresh=args.refresh)
    kinds = [args.pair] if args.pair else source.kinds
    jobs = []
    for kind in kinds:
        layers = [args.layer] if args.layer is not None else source.layers(kind)
        for layer in layers or [0]:  # a kind without layers: pair() says which kinds exist
            source.pair(layer, kind)  # every pair exists before any work starts
            jobs.append((kind, layer))
    root = cards_root(source, args.output)
    rows, origin = token_rows(args, source)
    print(f"{len(rows)} rows of {rows.shape[1]} tokens from {origin} -> {root}")
    total = 0
    for kind, layer in jobs:
        start = time.perf_counter()
        folder = feature_cards(
            source, layer, kind, rows, root, settings=settings, progress=not args.no_progress
        )
        seconds = time.perf_counter() - start
        meta = FeatureCards(folder).meta
        size = sum(meta["bytes"].values()) + (folder / "cards.json").stat().st_size
        total += size
        print(
            f"  {kind} layer {layer}: {meta['tokens_counted']:,} tokens in {seconds:.1f} s "
            f"({meta['tokens_counted'] / max(seconds, 1e-9):,.0f} tokens/s), {size:,} bytes"
        )
    tokens_bytes = sum(p.stat().st_size for p in root.glob("tokens-*.safetensors"))
    print(f"cards: {total:,} bytes, token rows: {tokens_bytes:,} bytes, in {root}")
    return 0
