"""An output folder's ``manifest.json``: the run's identity and one entry per finished shard.

On disk (format ``MANIFEST_FORMAT``)::

    {"format": 3, "config": {...}, "info": {...},
     "shards": [{"shard": 0, "file": "shard-00000.parquet", "rows": ..., "tokens": ...,
                 "windows": ..., "start": [ordinal, document, index],
                 "end": [ordinal, document, index], "final": false,
                 "sha256": "..."}, ...]}

``config`` is what must match for a rerun to resume the folder (``WindowEngine.identity``);
``info`` holds descriptive extras that are not compared. In memory a shard entry is a
``ShardEntry`` whose ``start`` and ``end`` are ``WindowRef``s; the lists above are their JSON
form, read and written only by ``to_json`` / ``from_json``. ``rows`` and ``sha256`` (of the
shard file's bytes) let every reader check that a shard is the one the run wrote; an entry's
``file`` is always its shard's own name in the folder (``SHARD_NAME``), nothing else is read.
Format 2 had no ``sha256``; 1 lacked the decomposition columns.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from jsae.corpus.job import CorpusError
from jsae.errors import first_line, os_reason

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 3
SHARD_NAME = "shard-{:05d}.parquet"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def temporary_name(name: str) -> str:
    """A temporary file name for ``name`` that no other writer uses (pid and a random part),
    so two writers can never write into one temporary file."""
    return f"{name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp"


def count(value: Any, what: str) -> int:
    """A whole number >= 0 read from JSON (not a bool, a float or a string)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a whole number >= 0, got {value!r}")
    return value


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
        if not isinstance(document, str):
            raise ValueError(f"a window's document must be a string, got {document!r}")
        return cls(count(ordinal, "a window's ordinal"), document, count(index, "a window's index"))


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
        sha256: the SHA-256 of the shard file's bytes, hex.
    """

    shard: int
    file: str
    rows: int
    tokens: int
    windows: int
    start: WindowRef
    end: WindowRef
    final: bool
    sha256: str

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
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardEntry:
        """An entry as the manifest holds it; ``ValueError`` for anything a run never writes
        (counts that are not whole numbers, a file other than the shard's own name)."""
        shard = count(data["shard"], "shard")
        file = data["file"]
        if file != SHARD_NAME.format(shard):
            raise ValueError(
                f"shard {shard} names the file {file!r}; it must be "
                f"{SHARD_NAME.format(shard)!r}, in the folder itself"
            )
        sha256 = data["sha256"]
        if not isinstance(sha256, str) or not SHA256_RE.match(sha256):
            raise ValueError(f"shard {shard} has no valid sha256, got {sha256!r}")
        if not isinstance(data["final"], bool):
            raise ValueError(f"shard {shard}'s final must be true or false")
        return cls(
            shard=shard,
            file=file,
            rows=count(data["rows"], f"shard {shard}'s rows"),
            tokens=count(data["tokens"], f"shard {shard}'s tokens"),
            windows=count(data["windows"], f"shard {shard}'s windows"),
            start=WindowRef.from_json(data["start"]),
            end=WindowRef.from_json(data["end"]),
            final=data["final"],
            sha256=sha256,
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
        tmp = self.path.with_name(temporary_name(self.path.name))
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps(data, indent=1))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
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
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format") != MANIFEST_FORMAT:
            raise CorpusError(
                f"{path} has format {data.get('format')!r}; this jsae reads {MANIFEST_FORMAT} "
                "(its shards have other columns or no content hashes): write this run to a new "
                "--output folder."
            )
        shards = [ShardEntry.from_json(s) for s in data["shards"]]
        numbers = [s.shard for s in shards]
        if len(set(numbers)) != len(numbers):
            raise ValueError("a shard is listed twice")
        config, info = data["config"], data.get("info", {})
        if not isinstance(config, dict) or not isinstance(info, dict):
            raise ValueError("config and info must be objects")
        if "eps" not in config:
            raise ValueError("its config has no eps")
        return Manifest(path, config, info, shards)
    except OSError as err:
        raise CorpusError(f"Could not read {path}: {os_reason(err)}.") from None
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # JSON and Unicode errors too
        raise CorpusError(
            f"{path} is corrupt ({first_line(err)}); use a new --output folder."
        ) from None
