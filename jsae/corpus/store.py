"""The output folder: Parquet shards beside ``manifest.json``, written so a crash loses nothing.

The folder holds ``shard-00000.parquet``, ``shard-00001.parquet``, ... (one row per
connection: ``SHARD_COLUMNS``, the prompt table's columns plus ``document`` and ``window``)
and ``manifest.json``. A shard is written to a temporary file and renamed, and the manifest
(also written atomically) is updated after the shard, so a run that stops at any moment leaves
only complete shards behind; a shard file the manifest does not list is dropped when the folder
is opened again. A folder holding another run's configuration is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jsae.corpus.job import CorpusError
from jsae.corpus.manifest import MANIFEST, Manifest, ShardEntry, read_manifest
from jsae.corpus.plan import Unit
from jsae.errors import os_reason
from jsae.table import BOOL_COLUMNS, COLUMNS, FLOAT_COLUMNS, INT_COLUMNS

SHARD_NAME = "shard-{:05d}.parquet"
SHARD_RE = re.compile(r"^shard-(\d{5,})\.parquet(\.tmp)?$")
SHARD_COLUMNS = ("document", "window", *COLUMNS)
_ARROW_TYPES = {
    # strings repeat over many rows (every connection of a token, every row of a document)
    **dict.fromkeys(("document", "token"), pa.dictionary(pa.int32(), pa.string())),
    **dict.fromkeys(("window", *INT_COLUMNS), pa.int32()),
    **dict.fromkeys(FLOAT_COLUMNS, pa.float32()),
    **dict.fromkeys(BOOL_COLUMNS, pa.bool_()),
}
SHARD_SCHEMA = pa.schema([(name, _ARROW_TYPES[name]) for name in SHARD_COLUMNS])


def write_shard(output: Path, unit: Unit, table: pa.Table, tokens: int) -> ShardEntry:
    """Write a shard atomically (temporary file, then rename); return its manifest entry."""
    name = SHARD_NAME.format(unit.shard)
    tmp = output / (name + ".tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, output / name)
    except OSError as err:
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
    )


def open_output(output: Path, config: dict[str, Any], info: dict[str, Any]) -> Manifest:
    """Start or resume an output folder: refuse another run's folder, drop partial files."""
    if output.exists() and not output.is_dir():
        raise CorpusError(f"--output {output} is a file; a corpus run writes to a folder.")
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
        manifest.info = info
    else:
        if output.is_dir() and any(output.iterdir()):
            raise CorpusError(
                f"--output {output} is not empty and holds no {MANIFEST}: it is not a corpus "
                "run's folder. Use a new or empty folder."
            )
        output.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(output / MANIFEST, config, info)
        manifest.save()
    listed = {s.file for s in manifest.shards}
    for path in output.iterdir():  # shards written after the last manifest update
        if SHARD_RE.match(path.name) and path.name not in listed:
            path.unlink()
    return manifest


def shard_paths(output: str | os.PathLike) -> list[Path]:
    """The finished shards of an output folder, in order."""
    manifest = read_manifest(output)
    return [manifest.path.parent / s.file for s in manifest.in_order()]


def read_shards(output: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """All finished shards as one pandas DataFrame (only for outputs that fit in memory)."""
    tables = [pq.read_table(p, columns=columns) for p in shard_paths(output)]
    if not tables:
        return pa.Table.from_batches([], SHARD_SCHEMA).to_pandas()
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()
