"""Building a pair's feature cards by streaming over token rows (``feature_cards``).

Rows are read ``batch_rows`` at a time: the model runs up to the pair's block
(``jsae.prompt.mlp_activations``, the MLP's own input and ``hook_mlp_out``), each SAE encodes
(``jsae.pair.topk_encode``, sae-lens's TopK semantics) and every firing (activation > 0, BOS
tokens left out) goes into that side's ``SideStats``. Every ``checkpoint_rows`` rows the
statistics are written to ``checkpoint.safetensors`` (atomically); a build that finds a
checkpoint made from the same rows, pair and settings continues after its last row, so an
interrupted build resumes and ends with the cards an uninterrupted one writes. Memory:
one batch's activations plus O(d_sae · (n_top + bins)) per side.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from jsae.errors import InputError, SourceError
from jsae.features.accumulate import SideStats
from jsae.features.settings import (
    CHECKPOINT_FILE,
    META_FILE,
    SIDES,
    CardSettings,
    card_folder_name,
)
from jsae.features.store import pair_fingerprint, write_cards
from jsae.features.tokens import check_rows, default_cards_root, save_rows, tokens_sha
from jsae.loading import Source
from jsae.pair import JSAEPair, topk_encode
from jsae.prompt import mlp_activations


def cards_root(source: Source, output: str | os.PathLike | None) -> Path:
    """``output``, else the source's own ``cards/`` folder."""
    if output is not None:
        return Path(output).expanduser()
    root = default_cards_root(source.name)
    if root is None:
        raise InputError(
            f"{source.name} has no folder to keep cards beside; name one with --output."
        )
    return root


@torch.no_grad()
def feature_cards(
    source: Source,
    layer: int,
    kind: str,
    tokens: torch.Tensor | np.ndarray,
    output: str | os.PathLike | None = None,
    *,
    settings: CardSettings | None = None,
    progress: bool = True,
    on_checkpoint: Callable[[int], None] | None = None,
) -> Path:
    """Build the cards of every input and output feature of ``source``'s ``kind`` pair of
    ``layer`` from token rows ``tokens`` ``[sequences, context]`` (each row BOS first).

    Writes ``{output}/{kind}/layer_{layer}/`` (``output``: the source's ``cards/`` folder by
    default) and the rows as ``{output}/tokens-{sha}.safetensors``; returns the pair's card
    folder. Finished cards of the same rows, weights and settings are kept as they are;
    other finished cards there are replaced. ``on_checkpoint(rows_done)`` is called after
    each checkpoint is written.
    """
    settings = settings or CardSettings()
    pair, model = source.pair(layer, kind), source.model_for(layer, kind)
    rows = check_rows(tokens, model)
    root = cards_root(source, output)
    folder = root / card_folder_name(kind, layer)
    identity = {
        "tokens": tokens_sha(rows),
        "pair": pair_fingerprint(pair),
        "settings": settings.to_json(),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tokens_file = save_rows(root, rows)
    except OSError as err:
        raise InputError(f"Could not write cards to {root}: {err.strerror or err}.") from None
    if _finished(folder, identity):
        return folder  # these rows, weights and settings are built already
    (folder / META_FILE).unlink(missing_ok=True)  # a folder without it is unfinished
    stats, done, counted = _resume(folder, identity, pair, settings)
    bos = model.tokenizer.bos_token_id if model.tokenizer is not None else None
    bar = tqdm(
        total=len(rows),
        initial=done,
        unit="row",
        desc=f"cards {kind} layer {layer}",
        disable=not progress,
        file=sys.stderr,
    )
    with bar:
        for start in range(done, len(rows), settings.batch_rows):
            batch = rows[start : start + settings.batch_rows]
            counted += _add_batch(stats, pair, model, batch, start, bos, settings)
            done = start + len(batch)
            bar.update(len(batch))
            if done % settings.checkpoint_rows == 0 and done < len(rows):
                _save_checkpoint(folder, stats, identity, done, counted)
                if on_checkpoint is not None:
                    on_checkpoint(done)
    write_cards(
        folder,
        stats,
        source=source,
        pair=pair,
        settings=settings,
        tokens_file=tokens_file,
        rows=rows,
        counted=counted,
        identity=identity,
    )
    (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
    return folder


def _add_batch(
    stats: dict[str, SideStats],
    pair: JSAEPair,
    model,
    batch: torch.Tensor,
    start: int,
    bos: int | None,
    settings: CardSettings,
) -> int:
    """Add one batch's firings to both sides; returns the tokens counted (BOS left out)."""
    x_in, x_out = mlp_activations(model, batch, [pair.layer])[pair.layer]
    counted = batch != bos if bos is not None else torch.ones_like(batch, dtype=torch.bool)
    seq = torch.arange(start, start + len(batch))[:, None].expand_as(batch)
    pos = torch.arange(batch.shape[1])[None, :].expand_as(batch)
    for side, sae, x in (("in", pair.sae_in, x_in), ("out", pair.sae_out, x_out)):
        acts, features = topk_encode(sae, x)
        fired = (acts > 0) & counted.to(acts.device)[..., None]
        where = fired.nonzero(as_tuple=True)
        stats[side].update(
            features[fired].cpu().numpy(),
            acts[fired].float().cpu().numpy(),
            seq[where[0], where[1]].numpy(),
            pos[where[0], where[1]].numpy(),
            settings,
        )
    return int(counted.sum())


def _finished(folder: Path, identity: dict) -> bool:
    """Whether ``folder`` holds finished cards of the same rows, weights and settings."""
    try:
        saved = json.loads((folder / META_FILE).read_text()).get("identity", {})
    except (OSError, ValueError):
        return False
    if {k: v for k, v in saved.items() if k != "settings"} != {
        k: v for k, v in identity.items() if k != "settings"
    }:
        return False
    try:
        theirs = CardSettings.from_json(saved["settings"])
    except (KeyError, TypeError, ValueError):
        return False
    return theirs.same_result(CardSettings.from_json(identity["settings"]))


def _save_checkpoint(
    folder: Path, stats: dict[str, SideStats], identity: dict, done: int, counted: int
) -> None:
    arrays = {}
    for side in SIDES:
        arrays.update(stats[side].arrays(side))
    meta = {"identity": json.dumps(identity, sort_keys=True), "rows": str(done)}
    meta["counted"] = str(counted)
    tmp = folder / f".{CHECKPOINT_FILE}.tmp"
    save_file(arrays, str(tmp), metadata=meta)
    os.replace(tmp, folder / CHECKPOINT_FILE)


def _resume(
    folder: Path, identity: dict, pair: JSAEPair, settings: CardSettings
) -> tuple[dict[str, SideStats], int, int]:
    """The statistics to continue from: a matching checkpoint's, else empty ones."""
    fresh = {
        "in": SideStats.empty(pair.d_sae_in, settings),
        "out": SideStats.empty(pair.d_sae_out, settings),
    }
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        return fresh, 0, 0
    try:
        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
        saved = json.loads(meta["identity"])
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise SourceError(
            f"The checkpoint {path} is damaged ({err}); delete it to build from the start."
        ) from None
    mine = dict(identity, settings=None)
    theirs = dict(saved, settings=None)
    if mine != theirs or not CardSettings.from_json(saved["settings"]).same_result(
        CardSettings.from_json(identity["settings"])
    ):
        raise InputError(
            f"{folder} holds an unfinished build from other token rows, pair weights or "
            f"settings; delete {path} (or the folder) to start this one, or use another --output."
        )
    arrays = load_file(str(path))
    stats = {side: SideStats.from_arrays(arrays, side) for side in SIDES}
    return stats, int(meta["rows"]), int(meta["counted"])


def build_command(source_name: str, layer: int, kind: str) -> str:
    """The one command that builds a pair's cards where the app looks for them."""
    return f"jsae features --source {shlex.quote(source_name)} --layer {layer} --pair {kind}"
