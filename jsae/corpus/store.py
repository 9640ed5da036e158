"""The output folder: Parquet shards beside ``manifest.json``, written so a crash loses nothing.

The folder holds ``shard-00000.parquet``, ``shard-00001.parquet``, ... (one row per
connection: ``SHARD_COLUMNS``, the prompt table's columns plus ``document`` and ``window``)
and ``manifest.json``. A shard is written to a temporary file of its writer's own and renamed,
and the manifest (also written atomically) is updated after the shard, so a run that stops at
any moment leaves only complete shards behind; a shard file the manifest does not list is
dropped when the folder is opened again. A folder holding another run's configuration is
refused, and so is one another run is writing (``jsae.corpus.lock``).

The manifest records each shard's row count and the SHA-256 of its bytes; every read
(``read_shards``, ``corpus_stats``, a resume) checks both, so a damaged, replaced or missing
shard is an error naming it, never other numbers.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jsae.corpus.job import CorpusError
from jsae.corpus.lock import LOCK
from jsae.corpus.manifest import (
    MANIFEST,
    SHARD_NAME,
    Manifest,
    ShardEntry,
    read_manifest,
    temporary_name,
)
from jsae.corpus.plan import Unit
from jsae.errors import first_line, os_reason
from jsae.table import (
    BOOL_COLUMNS,
    COLUMNS,
    DOCUMENT_COLUMN,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    WINDOW_COLUMN,
)

SHARD_RE = re.compile(r"^shard-(\d{5,})\.parquet((\.[^/]+)?\.tmp)?$")
"""A shard file, or a temporary file a writer of one left behind."""
MANIFEST_TMP_RE = re.compile(r"^manifest\.json(\.[^/]+)?\.tmp$")
SHARD_COLUMNS = (DOCUMENT_COLUMN, WINDOW_COLUMN, *COLUMNS)
_ARROW_TYPES = {
    # strings repeat over many rows (every connection of a token, every row of a document)
    **dict.fromkeys((DOCUMENT_COLUMN, "token"), pa.dictionary(pa.int32(), pa.string())),
    **dict.fromkeys((WINDOW_COLUMN, *INT_COLUMNS), pa.int32()),
    **dict.fromkeys(FLOAT_COLUMNS, pa.float32()),
    **dict.fromkeys(BOOL_COLUMNS, pa.bool_()),
}
SHARD_SCHEMA = pa.schema([(name, _ARROW_TYPES[name]) for name in SHARD_COLUMNS])


JOINT_METADATA = "jsae.joint"
"""The Parquet schema metadata key of a shard's exact joint-ablation sums (``JointSums``)."""


def write_shard(output: Path, unit: Unit, table: pa.Table, tokens: int) -> ShardEntry:
    """Write a shard atomically (a temporary file of this writer's own, then rename); return
    its manifest entry, with the row count and the SHA-256 of the bytes written."""
    name = SHARD_NAME.format(unit.shard)
    tmp = output / temporary_name(name)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue()
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, output / name)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CorpusError(f"Could not write {output / name}: {os_reason(err)}.") from None
    first, last = unit.windows[0], unit.windows[-1]
    return ShardEntry(
        shard=unit.shard,
        file=name,
        rows=table.num_rows,
        tokens=tokens,
        windows=len(unit.windows),
        start=first.ref,
        end=last.ref,
        final=last.final,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def check_output_folder(output: Path) -> None:
    """Refuse an ``--output`` that is a file, or a folder that is neither empty nor a corpus
    run's (touches nothing)."""
    if output.exists() and not output.is_dir():
        raise CorpusError(f"--output {output} is a file; a corpus run writes to a folder.")
    if (
        output.is_dir()
        and not (output / MANIFEST).is_file()
        and any(p.name != LOCK for p in output.iterdir())
    ):
        raise CorpusError(
            f"--output {output} is not empty and holds no {MANIFEST}: it is not a corpus "
            "run's folder. Use a new or empty folder."
        )


def open_output(output: Path, config: dict[str, Any], info: dict[str, Any]) -> Manifest:
    """Start or resume an output folder (the caller holds its ``claim_output``): refuse
    another run's folder, check every finished shard, drop partial files."""
    check_output_folder(output)
    if (output / MANIFEST).is_file():
        manifest = read_manifest(output)
        if manifest.config != config:
            changed = [
                f"{key}: {manifest.config.get(key)!r} there, {config.get(key)!r} now"
                for key in sorted(set(manifest.config) | set(config))
                if manifest.config.get(key) != config.get(key)
            ]
            raise CorpusError(
                f"{output} holds a run with another configuration ({'; '.join(changed)}). "
                "Rerun with the original settings to resume it, or use a new --output folder."
            )
        for _ in verified_shards(output, manifest):
            pass
        manifest.info = info
    else:
        output.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(output / MANIFEST, config, info)
        manifest.save()
    listed = {s.file for s in manifest.shards}
    for path in output.iterdir():  # shards written after the last manifest update
        if (SHARD_RE.match(path.name) and path.name not in listed) or MANIFEST_TMP_RE.match(
            path.name
        ):
            path.unlink()
    return manifest


def verified_shards(
    output: str | os.PathLike, manifest: Manifest | None = None
) -> Iterator[tuple[Path, ShardEntry]]:
    """Each finished shard in order, checked against its manifest entry first: the file's
    SHA-256 and its row count must be the ones the run recorded."""
    manifest = manifest or read_manifest(output)
    for entry in manifest.in_order():
        path = manifest.path.parent / entry.file
        try:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except FileNotFoundError:
            raise CorpusError(
                f"The shard {path} that {MANIFEST} lists is missing: the folder is incomplete. "
                "Use a new --output folder."
            ) from None
        except OSError as err:
            raise CorpusError(f"Could not read the shard {path}: {os_reason(err)}.") from None
        if digest != entry.sha256:
            raise CorpusError(_damaged(path, entry))
        rows = _footer_rows(path)
        if rows != entry.rows:
            raise CorpusError(
                f"The shard {path} holds {'unreadable' if rows is None else f'{rows:,}'} rows, "
                f"but {MANIFEST} records {entry.rows:,}: the manifest was edited. Use a new "
                "--output folder."
            )
        yield path, entry


def _footer_rows(path: Path) -> int | None:
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):
        return None


def _damaged(path: Path, entry: ShardEntry) -> str:
    """Why a shard whose bytes are not the ones written cannot be read."""
    rows = _footer_rows(path)
    why = (
        f"it holds {rows:,} rows where the run wrote {entry.rows:,} (a shard from elsewhere)"
        if rows is not None and rows != entry.rows
        else "its bytes differ from the ones the run wrote (its SHA-256 does not match)"
    )
    return (
        f"The shard {path} is damaged or was replaced: {why}. Its rows cannot be trusted; "
        "use a new --output folder."
    )


def shard_paths(output: str | os.PathLike) -> list[Path]:
    """The finished shards of an output folder, in order (unchecked: ``verified_shards``
    checks each one against the manifest)."""
    manifest = read_manifest(output)
    return [manifest.path.parent / s.file for s in manifest.in_order()]


def read_shards(output: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """All finished shards as one pandas DataFrame (only for outputs that fit in memory),
    each checked against the manifest first."""
    tables = []
    for path, _ in verified_shards(output):
        try:
            tables.append(pq.read_table(path, columns=columns))
        except (OSError, pa.ArrowException) as err:
            raise CorpusError(f"Could not read the shard {path}: {first_line(err)}") from None
    if not tables:
        return pa.Table.from_batches([], SHARD_SCHEMA).to_pandas()
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()
