"""A pair's cards on disk (Parquet, zstd) and reading them back lazily.

``features.parquet``: one row per (side, feature): ``fires`` (firings counted), ``frequency``
(fires / tokens counted), ``max_act``, ``histogram`` (``bins`` int32 counts of
log10(activation), ``jsae.features.accumulate.log_bins``).
``contexts.parquet``: one row per kept context: ``side``, ``feature``, ``rank`` (0 = largest),
``sequence``, ``position`` (into the card folder root's token rows) and ``activation``
(float16). ``logits.parquet``: per output feature its ``n_logits`` promoted tokens, ``rank``,
``token`` (id) and ``effect`` (float16, ``jsae.features.logits``). ``cards.json`` says what was
built, from what, and when the build was complete.

``FeatureCards`` opens ``cards.json`` only; each table is read the first time it is asked
for, and a card's contexts are read with a Parquet filter on (side, feature).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jsae import __version__
from jsae.errors import InputError, SourceError
from jsae.features.accumulate import SideStats
from jsae.features.logits import promoted_tokens
from jsae.features.settings import (
    CONTEXTS_FILE,
    FEATURES_FILE,
    FORMAT_VERSION,
    LOGITS_FILE,
    META_FILE,
    SIDES,
    CardSettings,
    card_folder_name,
)
from jsae.features.tokens import load_rows
from jsae.loading import Source
from jsae.pair import JSAEPair

COMPRESSION = "zstd"
LOGITS_METHOD = (
    "centre(W_dec_out[j]) @ (ln_final.w[:, None] * W_U): the final LayerNorm's gain folded "
    "into the unembedding as TransformerLens's fold_ln does; 1/sigma, biases and "
    "center_unembed left out (jsae.features.logits)"
)


def pair_fingerprint(pair: JSAEPair) -> str:
    """What identifies a pair's weights (both SAEs' encoders and decoders)."""
    h = hashlib.sha256()
    for sae in (pair.sae_in, pair.sae_out):
        for tensor in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec):
            h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _write(table: pd.DataFrame, path: Path) -> int:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), tmp, compression=COMPRESSION)
    os.replace(tmp, path)
    return path.stat().st_size


def features_frame(stats: dict[str, SideStats], counted: int) -> pd.DataFrame:
    frames = []
    for side in SIDES:
        s = stats[side]
        frames.append(
            pd.DataFrame(
                {
                    "side": side,
                    "feature": np.arange(s.d_sae, dtype=np.int32),
                    "fires": s.fires,
                    "frequency": s.fires / max(counted, 1),
                    "max_act": np.where(s.fires > 0, s.top_act[:, 0], 0.0).astype(np.float32),
                    "histogram": list(s.hist.astype(np.int32)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def contexts_frame(stats: dict[str, SideStats]) -> pd.DataFrame:
    frames = []
    for side in SIDES:
        s = stats[side]
        feature, rank = np.nonzero(np.isfinite(s.top_act))
        frames.append(
            pd.DataFrame(
                {
                    "side": side,
                    "feature": feature.astype(np.int32),
                    "rank": rank.astype(np.int16),
                    "sequence": s.top_seq[feature, rank],
                    "position": s.top_pos[feature, rank],
                    "activation": s.top_act[feature, rank].astype(np.float16),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def logits_frame(source: Source, pair: JSAEPair, n: int) -> pd.DataFrame:
    model = source.model_for(pair.layer, pair.kind)
    tokens, effects = promoted_tokens(model, pair.sae_out.W_dec.detach(), n)
    d_sae, kept = tokens.shape
    return pd.DataFrame(
        {
            "feature": np.repeat(np.arange(d_sae, dtype=np.int32), kept),
            "rank": np.tile(np.arange(kept, dtype=np.int16), d_sae),
            "token": tokens.reshape(-1).numpy().astype(np.int32),
            "effect": effects.reshape(-1).numpy().astype(np.float16),
        }
    )


def write_cards(
    folder: Path,
    stats: dict[str, SideStats],
    *,
    source: Source,
    pair: JSAEPair,
    settings: CardSettings,
    tokens_file: str,
    rows: Any,
    counted: int,
    identity: dict[str, Any],
) -> dict[str, Any]:
    """Write a finished build's three tables and ``cards.json`` (last, so a folder with a
    ``cards.json`` is complete); returns the meta data written."""
    sizes = {
        FEATURES_FILE: _write(features_frame(stats, counted), folder / FEATURES_FILE),
        CONTEXTS_FILE: _write(contexts_frame(stats), folder / CONTEXTS_FILE),
        LOGITS_FILE: _write(logits_frame(source, pair, settings.n_logits), folder / LOGITS_FILE),
    }
    meta = {
        "format": FORMAT_VERSION,
        "source": source.name,
        "model": source.model.cfg.model_name,
        "layer": pair.layer,
        "kind": pair.kind,
        "d_sae": {"in": pair.d_sae_in, "out": pair.d_sae_out},
        "k": {"in": pair.k_in, "out": pair.k_out},
        "settings": settings.to_json(),
        "tokens_file": f"../../{tokens_file}",
        "sequences": int(rows.shape[0]),
        "context": int(rows.shape[1]),
        "tokens_counted": int(counted),
        "identity": identity,
        "logits": LOGITS_METHOD,
        "bytes": sizes,
        "jsae_version": __version__,
    }
    tmp = folder / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / META_FILE)
    return meta


@dataclass(frozen=True)
class FeatureCard:
    """One feature's card.

    Args:
        side: ``"in"`` or ``"out"``; feature: its id.
        fires, frequency, max_act: firings counted, their share of the tokens, the largest.
        histogram: ``left``, ``right`` (activation, not log) and ``count`` per bin.
        contexts: ``rank``, ``sequence``, ``position``, ``activation``, ``token_id``, and with a
            tokenizer ``before``, ``token``, ``after`` (the text around it).
        logits: ``rank``, ``token_id``, ``effect`` (and ``token`` with a tokenizer), output
            features only (else None).
    """

    side: str
    feature: int
    fires: int
    frequency: float
    max_act: float
    histogram: pd.DataFrame
    contexts: pd.DataFrame
    logits: pd.DataFrame | None


class FeatureCards:
    """A pair's built cards, read lazily from ``folder`` (``cards/{kind}/layer_{L}``)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        path = self.folder / META_FILE
        try:
            self.meta: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise SourceError(
                f"{self.folder} holds no finished cards ({META_FILE} is missing); build them "
                "with `jsae features`."
            ) from None
        except (OSError, ValueError) as err:
            raise SourceError(f"Could not read {path}: {err}.") from None
        if self.meta.get("format") != FORMAT_VERSION:
            raise SourceError(
                f"{path} is cards format {self.meta.get('format')!r}; this jsae reads "
                f"{FORMAT_VERSION}. Rebuild them with `jsae features`."
            )
        self.settings = CardSettings.from_json(self.meta["settings"])

    @classmethod
    def find(cls, root: str | os.PathLike | None, layer: int, kind: str) -> FeatureCards | None:
        """The cards of a pair under a cards root, or None when none were built."""
        if root is None:
            return None
        folder = Path(root) / card_folder_name(kind, layer)
        return cls(folder) if (folder / META_FILE).is_file() else None

    def built_for(self, pair: JSAEPair) -> bool:
        """Whether these cards were built from ``pair``'s weights (not an earlier pair's)."""
        return self.meta.get("identity", {}).get("pair") == pair_fingerprint(pair)

    def _read(self, name: str, **kwargs) -> pd.DataFrame:
        try:
            return pq.read_table(self.folder / name, **kwargs).to_pandas()
        except (OSError, pa.ArrowException) as err:
            raise SourceError(f"Could not read {self.folder / name}: {err}.") from None

    @cached_property
    def features(self) -> pd.DataFrame:
        """Every feature's firing count, frequency, largest activation and histogram."""
        return self._read(FEATURES_FILE)

    @cached_property
    def rows(self) -> np.ndarray:
        """The token rows the cards index into."""
        return load_rows(self.folder / self.meta["tokens_file"]).numpy()

    @property
    def bin_edges(self) -> np.ndarray:
        lo, hi = self.settings.log10_range
        return 10 ** np.linspace(lo, hi, self.settings.bins + 1)

    def card(self, side: str, feature: int, tokenizer: Any = None, window: int = 8) -> FeatureCard:
        """``side``'s feature ``feature``; with a ``tokenizer``, each context's text
        (``window`` tokens either side)."""
        if side not in SIDES:
            raise InputError(f"A card's side is one of {', '.join(SIDES)}, got {side!r}.")
        d_sae = self.meta["d_sae"][side]
        if isinstance(feature, bool) or not 0 <= int(feature) < d_sae:
            raise InputError(f"The {side} SAE's features are 0..{d_sae - 1}; got {feature!r}.")
        feature = int(feature)
        table = self.features
        row = table[(table["side"] == side) & (table["feature"] == feature)].iloc[0]
        edges = self.bin_edges
        histogram = pd.DataFrame(
            {"left": edges[:-1], "right": edges[1:], "count": np.asarray(row["histogram"])}
        )
        where = [("side", "=", side), ("feature", "=", feature)]
        contexts = self._read(CONTEXTS_FILE, filters=where).sort_values("rank")
        contexts = contexts.drop(columns=["side", "feature"]).reset_index(drop=True)
        contexts["activation"] = contexts["activation"].astype(np.float32)
        contexts = self._with_text(contexts, tokenizer, window)
        logits = None
        if side == "out":
            logits = self._read(LOGITS_FILE, filters=[("feature", "=", feature)])
            logits = logits.sort_values("rank").drop(columns=["feature"]).reset_index(drop=True)
            logits = logits.rename(columns={"token": "token_id"})
            logits["effect"] = logits["effect"].astype(np.float32)
            if tokenizer is not None:
                logits["token"] = [tokenizer.decode([t]) for t in logits["token_id"]]
        return FeatureCard(
            side,
            feature,
            int(row["fires"]),
            float(row["frequency"]),
            float(row["max_act"]),
            histogram,
            contexts,
            logits,
        )

    @cached_property
    def _top_tokens(self) -> dict[tuple[str, int], int]:
        """Each output feature's most promoted token, and each input feature's most
        activating context's token (read once, for labels)."""
        logits = self._read(LOGITS_FILE, filters=[("rank", "=", 0)])
        first = self._read(CONTEXTS_FILE, filters=[("rank", "=", 0), ("side", "=", "in")])
        tokens = self.rows[first["sequence"].to_numpy(), first["position"].to_numpy()]
        top = {
            ("out", int(f)): int(t) for f, t in zip(logits["feature"], logits["token"], strict=True)
        }
        top.update({("in", int(f)): int(t) for f, t in zip(first["feature"], tokens, strict=True)})
        return top

    def label(self, side: str, feature: int, tokenizer: Any) -> str:
        """A short node label: ``in 5 “handle”`` (its top context's token) or ``out 12 ↑“ly”``
        (the token it promotes most); the bare id when it never fired."""
        token = self._top_tokens.get((side, int(feature)))
        if token is None:
            return f"{side} {feature}"
        text = tokenizer.decode([token]).replace("\n", "⏎") if tokenizer is not None else str(token)
        arrow = "↑" if side == "out" else ""
        return f"{side} {feature} {arrow}“{text.strip() or text}”"

    def _with_text(self, contexts: pd.DataFrame, tokenizer: Any, window: int) -> pd.DataFrame:
        if contexts.empty:
            return contexts.assign(token_id=pd.Series(dtype=np.int64))
        rows = self.rows
        seq, pos = contexts["sequence"].to_numpy(), contexts["position"].to_numpy()
        contexts["token_id"] = rows[seq, pos].astype(np.int64)
        if tokenizer is not None:
            spans = {"before": (-window, 0), "token": (0, 1), "after": (1, 1 + window)}
            for column, (lo, hi) in spans.items():
                contexts[column] = [
                    tokenizer.decode(rows[s, max(0, p + lo) : p + hi].tolist())
                    for s, p in zip(seq, pos, strict=True)
                ]
        return contexts
