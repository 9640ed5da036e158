"""An output folder's ``manifest.json``: the run's identity and one entry per finished shard.

On disk (format ``MANIFEST_FORMAT``)::

    {"format": 2, "config": {...}, "info": {...},
     "shards": [{"shard": 0, "file": "shard-00000.parquet", "rows": ..., "tokens": ...,
                 "windows": ..., "start": [ordinal, document, index],
                 "end": [ordinal, document, index], "final": false}, ...]}

``config`` is what must match for a rerun to resume the folder (``WindowEngine.identity``);
``info`` holds descriptive extras that are not compared. In memory a shard entry is a
``ShardEntry`` whose ``start`` and ``end`` are ``WindowRef``s; the lists above are their JSON
form, read and written only by ``to_json`` / ``from_json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from jsae.corpus.job import CorpusError
from jsae.errors import first_line, os_reason

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2


class WindowKey(NamedTuple):
    """A window's place in corpus order: its document's ordinal, then its number there."""

    ordinal: int
    index: int


@dataclass(frozen=True)
class WindowRef:
    """A window as a manifest names it.

    Args:
        ordinal: its document's position in the corpus.
        document: its document's id (file path, or row number in a dataset).
        index: its number within the document.
    """

    ordinal: int
    document: str
    index: int

    @property
    def key(self) -> WindowKey:
        return WindowKey(self.ordinal, self.index)

    def to_json(self) -> list:
        return [self.ordinal, self.document, self.index]

    @classmethod
    def from_json(cls, data: list) -> WindowRef:
        ordinal, document, index = data
        return cls(int(ordinal), str(document), int(index))


@dataclass(frozen=True)
class ShardEntry:
    """One finished shard, as the manifest records it.

    Args:
        shard: the shard's number.
        file: its file name in the output folder.
        rows: connections it holds.
        tokens: tokens it ablated.
        windows: windows it holds.
        start, end: its first and last window in corpus order.
        final: whether ``end`` is its document's last window.
    """

    shard: int
    file: str
    rows: int
    tokens: int
    windows: int
    start: WindowRef
    end: WindowRef
    final: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "file": self.file,
            "rows": self.rows,
            "tokens": self.tokens,
            "windows": self.windows,
            "start": self.start.to_json(),
            "end": self.end.to_json(),
            "final": self.final,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardEntry:
        return cls(
            shard=int(data["shard"]),
            file=str(data["file"]),
            rows=int(data["rows"]),
            tokens=int(data["tokens"]),
            windows=int(data["windows"]),
            start=WindowRef.from_json(data["start"]),
            end=WindowRef.from_json(data["end"]),
            final=bool(data["final"]),
        )


@dataclass
class Manifest:
    """An output folder's ``manifest.json``.

    Args:
        path: the file.
        config: the run's identity (``WindowEngine.identity``).
        info: descriptive extras (dataset path, source name, versions); not compared.
        shards: one entry per finished shard.
    """

    path: Path
    config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    shards: list[ShardEntry] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.shards)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def windows(self) -> int:
        return sum(s.windows for s in self.shards)

    def next_shard(self) -> int:
        return max((s.shard for s in self.shards), default=-1) + 1

    def in_order(self) -> list[ShardEntry]:
        """The shard entries by shard number."""
        return sorted(self.shards, key=lambda s: s.shard)

    def save(self) -> None:
        """Write the file atomically (temporary file, then rename)."""
        data = {
            "format": MANIFEST_FORMAT,
            "config": self.config,
            "info": self.info,
            "shards": [s.to_json() for s in self.in_order()],
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, self.path)
        except OSError as err:
            raise CorpusError(f"Could not write {self.path}: {os_reason(err)}.") from None

    def add(self, entry: ShardEntry) -> None:
        self.shards.append(entry)
        self.save()


def read_manifest(output: str | os.PathLike) -> Manifest:
    """The manifest of a corpus output folder."""
    output = Path(output).expanduser()
    path = output / MANIFEST
    if not path.is_file():
        raise CorpusError(
            f"{output} is not a corpus output folder (no {MANIFEST}); "
            "write one with `jsae ablate --dataset ... --output DIR`."
        )
    try:
        data = json.loads(path.read_text())
        if data.get("format") != MANIFEST_FORMAT:
            raise CorpusError(
                f"{path} has format {data.get('format')!r}; this jsae reads {MANIFEST_FORMAT} "
                "(its shards have other columns): write this run to a new --output folder."
            )
        shards = [ShardEntry.from_json(s) for s in data["shards"]]
        return Manifest(path, data["config"], data.get("info", {}), shards)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise CorpusError(
            f"{path} is corrupt ({first_line(err)}); use a new --output folder."
        ) from None
