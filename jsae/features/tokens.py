"""The token rows cards are built from, and where a source keeps its cards.

Rows are ``[sequences, context]`` token ids, each row starting with BOS: a bundle's held-out
sample (``heldout_tokens.safetensors``) as stored, or a corpus (``jsae.corpus.open_corpus``)
read document by document, each document's tokens after a BOS, packed into rows of
``context`` tokens as ``jsae.train.tokenize_documents`` packs them (``chunk_token_ids``: BOS
first, an incomplete last row dropped), until ``max_tokens`` tokens besides the row BOS are in.
A card refers to a context by (sequence, position) in these rows, which are stored once per
cards folder as ``tokens-{sha}.safetensors`` (int32).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Int
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformer_lens import HookedTransformer

from jsae.corpus.reader import Corpus
from jsae.errors import InputError, SourceError
from jsae.features.settings import CARDS_DIR
from jsae.loading import DEMO_DIR, DEMO_SOURCE, Source
from jsae.train import chunk_token_ids

TOKENS_KEY = "tokens"


def check_rows(tokens: Tensor | np.ndarray, model: HookedTransformer) -> Int[Tensor, "n ctx"]:
    """``tokens`` as a 2-D int64 tensor of ids in the model's vocabulary and context."""
    rows = torch.as_tensor(tokens)
    if rows.ndim != 2 or rows.dtype == torch.bool or rows.is_floating_point() or rows.numel() == 0:
        raise InputError(
            f"Token rows must be a non-empty 2-D integer array [sequences, context]; got "
            f"{rows.dtype} of shape {tuple(rows.shape)}."
        )
    rows = rows.long().cpu()
    if int(rows.min()) < 0 or int(rows.max()) >= model.cfg.d_vocab:
        raise InputError(
            f"Token ids must be from 0 to {model.cfg.d_vocab - 1}; got "
            f"{int(rows.min())}..{int(rows.max())}."
        )
    if rows.shape[1] > model.cfg.n_ctx:
        raise InputError(
            f"Rows of {rows.shape[1]} tokens exceed the model's context of {model.cfg.n_ctx}."
        )
    if rows.shape[0] > np.iinfo(np.int32).max:
        raise InputError("Too many token rows for int32 sequence numbers.")
    return rows


def corpus_rows(
    model: HookedTransformer, corpus: Corpus, context: int, max_tokens: int
) -> Int[Tensor, "n ctx"]:
    """Rows of ``context`` tokens from ``corpus`` holding ``max_tokens`` tokens besides each
    row's BOS (fewer when the corpus ends first), read lazily."""
    tokenizer = model.tokenizer
    if tokenizer is None or tokenizer.bos_token_id is None:
        raise InputError("The model needs a tokenizer with a BOS token to read a dataset.")
    if context < 2 or context > model.cfg.n_ctx:
        raise InputError(f"The context must be 2..{model.cfg.n_ctx} tokens, got {context}.")
    if isinstance(max_tokens, bool) or max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1, got {max_tokens!r}.")
    bos, body = tokenizer.bos_token_id, context - 1
    wanted = -(-max_tokens // body) * body
    ids: list[int] = []
    for _, _, blocks in corpus.documents():
        ids.append(bos)
        for block in blocks():
            ids.extend(tokenizer(block, add_special_tokens=False)["input_ids"])
            if len(ids) >= wanted:
                break
        if len(ids) >= wanted:
            break
    rows = chunk_token_ids(torch.tensor(ids[:wanted], dtype=torch.long), context, bos)
    if len(rows) == 0:
        raise InputError(
            f"{corpus.path} holds fewer than {body} tokens: not enough for one row of "
            f"{context}; give more text or a smaller --context."
        )
    return rows


def tokens_sha(rows: Tensor) -> str:
    """What identifies token rows: SHA-256 of their shape and int32 bytes."""
    data = rows.to(torch.int32).contiguous().numpy()
    return hashlib.sha256(f"{data.shape}".encode() + data.tobytes()).hexdigest()


def save_rows(root: Path, rows: Tensor) -> str:
    """Store ``rows`` in ``root`` once (named by their hash); returns the file's name."""
    name = f"tokens-{tokens_sha(rows)[:16]}.safetensors"
    path = root / name
    if not path.is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{name}.tmp"
        save_file({TOKENS_KEY: rows.to(torch.int32).contiguous()}, str(tmp))
        os.replace(tmp, path)
    return name


def load_rows(path: str | os.PathLike) -> Int[Tensor, "n ctx"]:
    """Token rows from a safetensors file (a bundle's held-out sample, or a cards folder's)."""
    try:
        tensors = load_file(str(path))
    except (OSError, ValueError, RuntimeError) as err:
        raise SourceError(f"Could not read token rows from {path}: {err}") from None
    if TOKENS_KEY not in tensors:
        raise SourceError(f"{path} holds no {TOKENS_KEY!r} tensor: not a token sample.")
    return tensors[TOKENS_KEY].long()


def source_folder(name: str) -> Path | None:
    """The folder a source was loaded from (``demo``: the bundle's), else None."""
    if name == DEMO_SOURCE:
        return DEMO_DIR
    path = Path(name).expanduser()
    return path if path.is_dir() else None


def default_cards_root(name: str) -> Path | None:
    """Where a source's cards live by default: ``cards/`` in its folder (None without one)."""
    folder = source_folder(name)
    return None if folder is None else folder / CARDS_DIR


def heldout_path(source: Source) -> Path | None:
    """The source's held-out sample (``info["heldout_sample"]``), when it has one."""
    folder, sample = source_folder(source.name), source.info.get("heldout_sample")
    if folder is None or not isinstance(sample, str):
        return None
    path = folder / sample
    return path if path.is_file() else None
