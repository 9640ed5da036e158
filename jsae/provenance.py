"""Where a written table came from: the settings that reproduce it, in one schema.

Every per-connection table jsae writes (``jsae.table.write_table``: ``jsae ablate
--output``, the app's Parquet download, the W&B artifact) records a ``Provenance``: in a
Parquet file as the key-value metadata entry ``PROVENANCE_KEY`` (JSON), beside a CSV file as
the sidecar ``FILE.csv.json``. ``read_provenance`` reads it back, and ``jsae ablate --from
FILE`` re-runs it. The prompt is kept whole (text, or token ids) with its SHA-256, so a
re-run can check it tokenizes the same input.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsae import __version__
from jsae.errors import InputError, os_reason

PROVENANCE_KEY = "jsae.provenance"
"""The Parquet key-value metadata key (and the sidecar's top-level key) of a provenance."""
SIDECAR_SUFFIX = ".json"
"""A CSV table's provenance is the file ``<table>.csv`` + this suffix."""
PROVENANCE_FORMAT = 1
"""Raised when the schema changes incompatibly; a file of another format is refused."""

PromptRecord = str | list[int] | list[str | list[int]]
"""A prompt as recorded: text, token ids, or a list of them (a batch)."""


def prompt_record(value: Any) -> PromptRecord:
    """A prompt as recorded: text as it is, token ids (a tensor, an array or a list) as a
    list of ints, a list of prompts as a list of those."""
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist"):  # a torch tensor or numpy array of token ids
        return [int(v) for v in value.tolist()]
    if all(isinstance(v, int) for v in value):
        return [int(v) for v in value]
    return [prompt_record(v) for v in value]  # type: ignore[misc]


def prompt_sha256(prompt: PromptRecord) -> str:
    """The SHA-256 of a prompt as recorded (its canonical JSON, UTF-8)."""
    text = json.dumps(prompt, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Provenance:
    """What a table was computed from.

    Args:
        layer, kind: the pair (block and kind, ``jsae.pair.PAIR_KINDS``).
        eps: the ε ``important`` was split at.
        mode: the ablation mode; step: the step s (1 in unit mode, S in scale mode; None in
            zero mode, where s = a_i).
        include_bos: whether the BOS position was ablated.
        prompt: the input as given: text, token ids, or a list of them (a batch).
        prompt_sha256: ``prompt_sha256(prompt)``.
        model_name: the model's ``cfg.model_name``.
        source: the source it was loaded from (``load_source``'s argument), when known.
        model: the model override given with the source (``--model``), if any.
        max_ablated: ``--max-tokens``, the cap on positions ablated; max_prompt_tokens: the
            cap on the tokenized prompt, BOS included (the hosted app's).
        pairs, pairs_seed: which connections of each token the table keeps
            (``jsae.sampler.PairSampler.record``: ``all``, ``equal_rank`` or ``random``, and
            the random sampler's seed, None for the others). A file written before jsae
            recorded them reads as ``all``.
        jsae_version: the package version that wrote it.
    """

    layer: int
    kind: str
    eps: float
    mode: str
    step: float | None
    include_bos: bool
    prompt: PromptRecord
    prompt_sha256: str
    model_name: str | None
    source: str | None = None
    model: str | None = None
    max_ablated: int | None = None
    max_prompt_tokens: int | None = None
    pairs: str = "all"
    pairs_seed: int | None = None
    jsae_version: str = __version__

    def to_json(self) -> str:
        return json.dumps(
            {"format": PROVENANCE_FORMAT, **dataclasses.asdict(self)}, ensure_ascii=False
        )

    @classmethod
    def from_json(cls, text: str, where: str) -> Provenance:
        """Read ``to_json``'s output, refusing another format or a prompt that does not
        match its hash."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            raise InputError(f"The provenance of {where} is not valid JSON.") from None
        found_format = data.get("format") if isinstance(data, dict) else None
        if found_format != PROVENANCE_FORMAT:
            raise InputError(
                f"The provenance of {where} is of format {found_format!r}; this jsae "
                f"({__version__}) reads format {PROVENANCE_FORMAT}."
            )
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            found = cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as err:
            raise InputError(f"The provenance of {where} is incomplete: {err}.") from None
        if prompt_sha256(found.prompt) != found.prompt_sha256:
            raise InputError(
                f"The provenance of {where} holds a prompt that does not match its hash."
            )
        return found

    def replace(self, **changes: Any) -> Provenance:
        return dataclasses.replace(self, **changes)


def sidecar(path: str | os.PathLike) -> Path:
    """Where a CSV table's provenance is written: ``results.csv`` -> ``results.csv.json``."""
    return Path(str(path) + SIDECAR_SUFFIX)


def write_sidecar(provenance: Provenance, path: str | os.PathLike) -> None:
    try:
        sidecar(path).write_text(provenance.to_json(), encoding="utf-8")
    except OSError as err:
        raise InputError(f"Could not write {sidecar(path)}: {os_reason(err)}.") from None


def read_provenance(path: str | os.PathLike) -> Provenance:
    """The provenance recorded with the table at ``path`` (``.parquet``: its metadata;
    ``.csv``: its sidecar)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path} does not exist.")
    if path.suffix.lower() == ".csv":
        try:
            text = sidecar(path).read_text(encoding="utf-8")
        except OSError:
            raise InputError(
                f"{path} has no provenance: its sidecar {sidecar(path).name} is missing "
                "(a CSV downloaded from the app carries none; download Parquet instead)."
            ) from None
        return Provenance.from_json(text, str(path))
    import pyarrow.parquet as pq  # here: only Parquet files need it

    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError) as err:
        raise InputError(f"{path} is not a Parquet table ({err}).") from None
    raw = metadata.get(PROVENANCE_KEY.encode())
    if raw is None:
        raise InputError(
            f"{path} records no provenance (written by another tool or an older jsae); "
            "pass the settings yourself."
        )
    return Provenance.from_json(raw.decode("utf-8"), str(path))
