"""Corpus-scale ablation: the engine over a whole corpus, as resumable Parquet shards.

A corpus is a UTF-8 text file, a folder of ``.txt`` files (sorted by path; each file is a
document), or a Hugging Face dataset saved with ``save_to_disk`` (each row of its text column
is a document). Documents are read lazily (text files in blocks of about 1 MiB cut at line
ends, dataset rows one at a time), tokenized without special tokens, and cut into *windows* of
``window_tokens`` tokens: BOS (when the tokenizer has one) followed by the next
``window_tokens - 1`` tokens of the document; the last window of a document may be shorter.
Windows never span two documents. Every window is ablated on its own, as a prompt would be,
so a window's rows do not depend on which shard it lands in.

The output folder holds ``shard-00000.parquet``, ``shard-00001.parquet``, ... (one row per
connection: ``SHARD_COLUMNS``, the prompt table's columns plus ``document`` and ``window``)
and ``manifest.json``: the run's configuration and, per shard, the range of windows it
finished. A shard is written to a temporary file and renamed, and the manifest (also written
atomically) is updated after the shard, so a run that stops at any moment leaves only complete
shards behind; rerunning the same command skips every window already recorded. A rerun with a
different configuration is refused.

Statistics stream the shards (``corpus_stats``): they can be re-split at any ε since the shards
keep the Jacobian of every connection. See ``jsae.mergeable`` for which are exact.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from jsae.ablation import AblationConfig, ablate_activations
from jsae.errors import InputError, JSAEError
from jsae.mergeable import CorpusStats
from jsae.prompt import first_ablated, mlp_inputs
from jsae.stats import Tolerance
from jsae.table import COLUMNS, check_eps, connection_columns, is_important

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
SHARD_NAME = "shard-{:05d}.parquet"
SHARD_RE = re.compile(r"^shard-(\d{5,})\.parquet(\.tmp)?$")
SHARD_COLUMNS = ("document", "window", *COLUMNS)
SHARD_SCHEMA = pa.schema(
    [
        ("document", pa.dictionary(pa.int32(), pa.string())),
        ("window", pa.int32()),
        ("position", pa.int32()),
        ("token", pa.dictionary(pa.int32(), pa.string())),
        ("in_feature", pa.int32()),
        ("out_feature", pa.int32()),
        ("in_act", pa.float32()),
        ("out_act", pa.float32()),
        ("jacobian", pa.float32()),
        ("predicted", pa.float32()),
        ("diff", pa.float32()),
        ("important", pa.bool_()),
    ]
)
BLOCK_CHARS = 1 << 20
TARGET_SHARD_ROWS = 2_000_000
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
ENGINES = ("local", "ray")

CorpusProgress = Callable[[int, int | None], None]
"""Called as ``progress(tokens_done, max_tokens_or_None)``; tokens count every run so far."""


class CorpusError(JSAEError):
    """A corpus or output folder is unusable (missing, unreadable, another run's folder)."""


# --------------------------------------------------------------------------------------
# The job


@dataclass(frozen=True)
class CorpusJob:
    """One corpus run: what to ablate, over which corpus, written where.

    Args:
        dataset: a text file, a folder of ``.txt`` files, or a HF dataset folder.
        output: the folder for the shards and ``manifest.json``.
        source: ``"demo"``, a local folder or a W&B artifact path (as ``load_source``).
        model: a model for a pair folder (name or folder), or None.
        layer: block whose MLP to test (None: the first with a pair of ``pair_kind``).
        pair_kind: ``"jsae"`` or ``"plain"``.
        eps: ε of the stored ``important`` column (statistics re-split at any ε later).
        ablation: mode, scale, BOS and memory settings (None: ``AblationConfig()``).
        window_tokens: tokens per window, BOS included (None: the model's context).
        text_column: the text column of a HF dataset.
        split: the split of a HF ``DatasetDict`` (None: ``train``, or its only split).
        max_tokens: stop once this many tokens are ablated, counting earlier runs into
            ``output`` (the last window is finished, so up to one window more).
        shard_tokens: tokens per shard (None: about 2 million connections per shard).
        device: torch device.
    """

    dataset: Path
    output: Path
    source: str = "demo"
    model: str | None = None
    layer: int | None = None
    pair_kind: str = "jsae"
    eps: float = 0.01
    ablation: AblationConfig | None = None
    window_tokens: int | None = None
    text_column: str = "text"
    split: str | None = None
    max_tokens: int | None = None
    shard_tokens: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", Path(self.dataset).expanduser())
        object.__setattr__(self, "output", Path(self.output).expanduser())
        object.__setattr__(self, "eps", check_eps(self.eps))
        for name in ("window_tokens", "max_tokens", "shard_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise InputError(
                    f"--{name.replace('_', '-')} must be a positive integer, got {value!r}."
                )

    @property
    def config(self) -> AblationConfig:
        return self.ablation or AblationConfig()


# --------------------------------------------------------------------------------------
# Reading corpora


@dataclass
class Corpus:
    """A corpus, read lazily.

    Args:
        path: the file or folder given.
        kind: ``"text"`` (text files) or ``"hf"`` (a dataset saved to disk).
        files: the text files, in order (``kind="text"``).
        dataset: the HF ``Dataset`` (memory-mapped, ``kind="hf"``).
        text_column, split: as in ``CorpusJob``.
    """

    path: Path
    kind: str
    files: list[Path] = field(default_factory=list)
    dataset: Any = None
    text_column: str = "text"
    split: str | None = None

    def fingerprint(self) -> str:
        """Identifies the corpus's content cheaply (file names and sizes, or the dataset's
        own fingerprint), so a resumed run refuses a changed corpus."""
        h = hashlib.sha256()
        if self.kind == "text":
            for f in self.files:
                h.update(f"{self._doc_id(f)}\0{f.stat().st_size}\n".encode())
        else:
            h.update(f"{self.dataset._fingerprint}\0{self.split}\0{self.text_column}".encode())
        return h.hexdigest()[:16]

    def _doc_id(self, file: Path) -> str:
        return file.name if self.path.is_file() else file.relative_to(self.path).as_posix()

    def documents(self) -> Iterator[tuple[int, str, Callable[[], Iterator[str]]]]:
        """``(ordinal, document id, blocks)`` in corpus order; ``blocks()`` reads the text."""
        if self.kind == "text":
            for ordinal, file in enumerate(self.files):
                yield ordinal, self._doc_id(file), (lambda f=file: _file_blocks(f))
            return
        ordinal = 0
        for batch in self.dataset.select_columns([self.text_column]).iter(batch_size=64):
            for text in batch[self.text_column]:
                yield ordinal, str(ordinal), (lambda t=text: iter([t or ""]))
                ordinal += 1


def _file_blocks(path: Path) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            block: list[str] = []
            size = 0
            for line in f:
                block.append(line)
                size += len(line)
                if size >= BLOCK_CHARS:
                    yield "".join(block)
                    block, size = [], 0
            if block:
                yield "".join(block)
    except OSError as err:
        raise CorpusError(f"Could not read {path}: {err.strerror or err}.") from None


def open_corpus(path: str | os.PathLike, text_column: str = "text", split: str | None = None):
    """A text file, a folder of .txt files, or a HF dataset folder (``save_to_disk``)."""
    path = Path(path).expanduser()
    if path.is_file():
        return Corpus(path, "text", files=[path])
    if not path.is_dir():
        raise CorpusError(f"The dataset {path} does not exist (a .txt file or a folder).")
    if any((path / marker).is_file() for marker in HF_MARKERS):
        return _open_hf(path, text_column, split)
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise CorpusError(
            f"{path} holds no .txt files and is not a Hugging Face dataset saved with "
            "save_to_disk (no dataset_info.json / dataset_dict.json)."
        )
    return Corpus(path, "text", files=files)


def _open_hf(path: Path, text_column: str, split: str | None) -> Corpus:
    try:
        import datasets
    except ImportError:
        raise CorpusError(
            f"{path} is a Hugging Face dataset; reading it needs `pip install datasets`."
        ) from None
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as err:  # datasets raises FileNotFoundError, ArrowInvalid, ...
        raise CorpusError(f"Could not open the dataset {path}: {err}") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if split is None:
            split = "train" if "train" in ds else (splits[0] if len(splits) == 1 else None)
        if split not in ds:
            raise InputError(
                f"{path} has splits {', '.join(splits)}; pick one with --split."
                if split is None
                else f"{path} has no split {split!r}; it has {', '.join(splits)}."
            )
        ds = ds[split]
    elif split is not None:
        raise InputError(f"{path} is a single dataset without splits; drop --split.")
    if text_column not in ds.column_names:
        raise InputError(
            f"{path} has no column {text_column!r}; its columns are "
            f"{', '.join(ds.column_names)}. Pick one with --text-column."
        )
    return Corpus(path, "hf", dataset=ds, text_column=text_column, split=split)


# --------------------------------------------------------------------------------------
# Windows and what is done


@dataclass
class Window:
    """One context-sized piece of a document.

    Args:
        ordinal: the document's position in the corpus.
        document: the document's id (file path, or row number in a dataset).
        index: the window's number within the document.
        tokens: token ids, BOS first when the tokenizer has one.
        final: whether it is the document's last window.
    """

    ordinal: int
    document: str
    index: int
    tokens: np.ndarray
    final: bool

    @property
    def key(self) -> tuple[int, int]:
        return self.ordinal, self.index


@dataclass
class Unit:
    """The windows of one shard.

    Args:
        shard: the shard's number (its file is ``SHARD_NAME.format(shard)``).
        windows: the windows, in corpus order.
    """

    shard: int
    windows: list[Window]


class DoneSet:
    """The windows earlier runs finished: a union of corpus-order ranges, one per shard.

    A shard's range runs from its first to its last window; any window inside that it does not
    hold was skipped because another shard holds it, so the union of ranges is exactly the set
    of finished windows.
    """

    def __init__(self, shards: list[dict]):
        spans = sorted(
            ((tuple(s["start"][::2]), (*s["end"][::2], bool(s["final"]))) for s in shards),
            key=lambda span: span[0],
        )
        # coalesce ranges that touch (next window of the same document, or the next
        # document's first window after a final one), so a document split over shards is
        # known to be done as a whole
        merged: list[list] = []
        for start, end in spans:
            if merged:
                o, w, final = merged[-1][1]
                if start <= (o, w + 1) or (final and start == (o + 1, 0)):
                    merged[-1][1] = max(merged[-1][1], end)
                    continue
            merged.append([start, end])
        self.starts = [span[0] for span in merged]
        self.reach: list[tuple[int, int, bool]] = []  # running max of (end, final)
        best: tuple[int, int, bool] = (-1, -1, False)
        for _, end in merged:
            best = max(best, end)
            self.reach.append(best)

    def _reach(self, key: tuple[int, int]) -> tuple[int, int, bool] | None:
        i = bisect.bisect_right(self.starts, key) - 1
        return self.reach[i] if i >= 0 else None

    def window_done(self, ordinal: int, index: int) -> bool:
        reach = self._reach((ordinal, index))
        return reach is not None and reach[:2] >= (ordinal, index)

    def document_done(self, ordinal: int) -> bool:
        """True when every window of the document is known to be done (no need to read it)."""
        reach = self._reach((ordinal, 0))
        return reach is not None and (reach[0] > ordinal or (reach[0] == ordinal and reach[2]))


def document_windows(
    blocks: Iterator[str], encode: Callable[[str], list[int]], window_tokens: int, bos: int | None
) -> Iterator[tuple[np.ndarray, bool]]:
    """Cut a document's token stream into windows: ``(tokens, is_last)``."""
    content = window_tokens - (bos is not None)
    head = [] if bos is None else [bos]
    buf: list[int] = []
    pending: list[int] | None = None
    for block in blocks:
        buf.extend(encode(block))
        start = 0
        while len(buf) - start >= content:
            if pending is not None:
                yield np.asarray(head + pending, dtype=np.int64), False
            pending = buf[start : start + content]
            start += content
        del buf[:start]
    if buf:
        if pending is not None:
            yield np.asarray(head + pending, dtype=np.int64), False
        pending = buf
    if pending is not None:
        yield np.asarray(head + pending, dtype=np.int64), True


def plan_units(
    corpus: Corpus,
    encode: Callable[[str], list[int]],
    window_tokens: int,
    bos: int | None,
    *,
    ablated: Callable[[np.ndarray], int],
    done: DoneSet,
    first_shard: int,
    shard_tokens: int,
    tokens_before: int = 0,
    max_tokens: int | None = None,
    max_windows: int | None = None,
    status: dict[str, bool] | None = None,
) -> Iterator[Unit]:
    """The shards still to compute, in corpus order, skipping finished windows.

    Stops at the end of the corpus, once ``max_tokens`` (counting ``tokens_before``) is
    reached, or after ``max_windows`` new windows. ``status["finished"]`` is set to whether
    the corpus or ``max_tokens`` ran out (not ``max_windows``) once the last unit is taken.
    """
    status = {} if status is None else status
    status["finished"] = False
    tokens, windows, shard = tokens_before, 0, first_shard
    unit: list[Window] = []
    unit_tokens = 0

    def stop() -> bool:
        return (max_tokens is not None and tokens >= max_tokens) or (
            max_windows is not None and windows >= max_windows
        )

    if stop():
        status["finished"] = max_tokens is not None and tokens >= max_tokens
        return
    for ordinal, doc_id, blocks in corpus.documents():
        if done.document_done(ordinal):
            continue
        for index, (ids, final) in enumerate(
            document_windows(blocks(), encode, window_tokens, bos)
        ):
            if done.window_done(ordinal, index):
                continue
            n = ablated(ids)
            unit.append(Window(ordinal, doc_id, index, ids, final))
            unit_tokens += n
            tokens += n
            windows += 1
            if unit_tokens >= shard_tokens:
                yield Unit(shard, unit)
                shard, unit, unit_tokens = shard + 1, [], 0
            if stop():
                break
        if stop():
            break
    finished = not stop() or (max_tokens is not None and tokens >= max_tokens)
    if unit:
        yield Unit(shard, unit)
    status["finished"] = finished


# --------------------------------------------------------------------------------------
# The engine over windows


class WindowEngine:
    """The ablation engine for windows of one source's pair: loads the source once.

    Args:
        job: the run (source, layer, pair kind, ablation settings, ε).
        device: overrides ``job.device`` (a Ray worker picks its GPU).
    """

    def __init__(self, job: CorpusJob, device: str | None = None):
        from jsae.loading import load_source
        from jsae.sandwich import Sandwich

        self.job = job
        self.source = load_source(job.source, model=job.model, device=device or job.device)
        self.model = self.source.model
        self.layer = job.layer if job.layer is not None else self.source.layers(job.pair_kind)[0]
        self.pair = self.source.pair(self.layer, job.pair_kind)
        self.pair.check_model(self.model)
        self.tokenizer = self.model.tokenizer
        if self.tokenizer is None:
            raise InputError("The model has no tokenizer; a corpus run needs one.")
        self.bos = self.tokenizer.bos_token_id
        n_ctx = self.model.cfg.n_ctx
        self.window_tokens = job.window_tokens or n_ctx
        if self.window_tokens > n_ctx or self.window_tokens < 1 + (self.bos is not None):
            raise InputError(
                f"--window-tokens must be between {1 + (self.bos is not None)} and the model's "
                f"context, {n_ctx}; got {self.window_tokens}."
            )
        self.sandwich = Sandwich(self.model, self.pair)
        self.connections_per_token = self.pair.k_in * self.pair.k_out
        self._strings: dict[int, str] = {}

    @property
    def shard_tokens(self) -> int:
        return self.job.shard_tokens or max(1, TARGET_SHARD_ROWS // self.connections_per_token)

    def identity(self, corpus: Corpus) -> dict[str, Any]:
        """What must match for a rerun to resume this output folder."""
        cfg = self.job.config
        model = self.job.model
        if model is not None and Path(model).expanduser().is_dir():
            model = str(Path(model).expanduser().resolve())
        return {
            "source": _resolved(self.job.source),
            "model": model,
            "layer": self.layer,
            "pair": self.job.pair_kind,
            "mode": cfg.mode,
            "scale": cfg.scale if cfg.mode == "scale" else None,
            "include_bos": cfg.include_bos,
            "eps": self.job.eps,
            "window_tokens": self.window_tokens,
            "k_in": self.pair.k_in,
            "k_out": self.pair.k_out,
            "d_sae_in": self.pair.d_sae_in,
            "d_sae_out": self.pair.d_sae_out,
            "dataset_kind": corpus.kind,
            "text_column": corpus.text_column if corpus.kind == "hf" else None,
            "split": corpus.split,
            "dataset_fingerprint": corpus.fingerprint(),
        }

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def first_ablated(self, tokens: np.ndarray) -> int:
        return first_ablated(tokens, self.bos, self.job.config.include_bos)

    def ablated(self, tokens: np.ndarray) -> int:
        """How many positions of a window are ablated (BOS excluded unless asked)."""
        return len(tokens) - self.first_ablated(tokens)

    def plan(self, corpus: Corpus, done: DoneSet, **kwargs) -> Iterator[Unit]:
        return plan_units(
            corpus,
            self.encode,
            self.window_tokens,
            self.bos,
            ablated=self.ablated,
            done=done,
            shard_tokens=self.shard_tokens,
            max_tokens=self.job.max_tokens,
            **kwargs,
        )

    def _string(self, token: int) -> str:
        text = self._strings.get(token)
        if text is None:
            text = self._strings[token] = self.tokenizer.decode([token])
        return text

    def run_unit(
        self, unit: Unit, progress: Callable[[int], None] | None = None
    ) -> tuple[pa.Table, int]:
        """Ablate every window of a unit: the shard's table and how many tokens it ablated."""
        cfg = self.job.config
        dtype = self.sandwich.mlp.W_in.dtype
        columns: dict[str, list] = {name: [] for name in SHARD_COLUMNS if name != "important"}
        documents: dict[str, int] = {}
        tokens_done = 0
        for w in unit.windows:
            tokens = torch.from_numpy(w.tokens)
            x = mlp_inputs(self.model, tokens, self.layer).to(dtype)
            first = self.first_ablated(w.tokens)
            positions = torch.arange(first, len(tokens))
            c = connection_columns(ablate_activations(self.sandwich, x[first:], cfg, positions))
            n = len(c["diff"])
            columns["document"].append(
                np.full(n, documents.setdefault(w.document, len(documents)), np.int32)
            )
            columns["window"].append(np.full(n, w.index, np.int32))
            columns["token"].append(w.tokens[c["position"]])
            for name, values in c.items():
                columns[name].append(values)
            tokens_done += len(positions)
            if progress is not None:
                progress(len(positions))
        data = {name: np.concatenate(parts) for name, parts in columns.items()}
        arrays = {
            "document": pa.DictionaryArray.from_arrays(
                pa.array(data["document"], pa.int32()), pa.array(list(documents), pa.string())
            ),
            "token": self._token_column(
                data["token"], np.concatenate([w.tokens for w in unit.windows])
            ),
        }
        for name in SHARD_COLUMNS:
            if name == "important":
                arrays[name] = pa.array(is_important(data["jacobian"], self.job.eps))
            elif name not in arrays:
                arrays[name] = pa.array(data[name])
        table = pa.Table.from_arrays([arrays[n] for n in SHARD_COLUMNS], schema=SHARD_SCHEMA)
        return table, tokens_done

    def _token_column(self, ids: np.ndarray, vocab: np.ndarray) -> pa.DictionaryArray:
        """Token strings per row, dictionary-encoded; ``vocab``: the unit's token ids."""
        unique = np.unique(vocab)
        strings = [self._string(int(t)) for t in unique]
        categories = list(dict.fromkeys(strings))  # distinct ids may decode alike
        code_of = {s: i for i, s in enumerate(categories)}
        lookup = np.zeros(int(unique[-1]) + 1 if len(unique) else 1, dtype=np.int32)
        lookup[unique] = [code_of[s] for s in strings]
        return pa.DictionaryArray.from_arrays(
            pa.array(lookup[ids], pa.int32()), pa.array(categories, pa.string())
        )


def _resolved(source: str) -> str:
    path = Path(source).expanduser()
    return str(path.resolve()) if source != "demo" and path.is_dir() else source


# --------------------------------------------------------------------------------------
# The output folder


def write_shard(output: Path, unit: Unit, table: pa.Table, tokens: int) -> dict[str, Any]:
    """Write a shard atomically (temporary file, then rename); return its manifest entry."""
    name = SHARD_NAME.format(unit.shard)
    tmp = output / (name + ".tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, output / name)
    except OSError as err:
        raise CorpusError(f"Could not write {output / name}: {err.strerror or err}.") from None
    first, last = unit.windows[0], unit.windows[-1]
    return {
        "shard": unit.shard,
        "file": name,
        "rows": table.num_rows,
        "tokens": tokens,
        "windows": len(unit.windows),
        "start": [first.ordinal, first.document, first.index],
        "end": [last.ordinal, last.document, last.index],
        "final": last.final,
    }


@dataclass
class Manifest:
    """An output folder's ``manifest.json``.

    Args:
        path: the file.
        config: the run's identity (``WindowEngine.identity``).
        info: descriptive extras (dataset path, source name, versions); not compared.
        shards: one entry per finished shard (``write_shard``).
    """

    path: Path
    config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    shards: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(s["tokens"] for s in self.shards)

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.shards)

    @property
    def windows(self) -> int:
        return sum(s["windows"] for s in self.shards)

    def next_shard(self) -> int:
        return max((s["shard"] for s in self.shards), default=-1) + 1

    def save(self) -> None:
        data = {
            "format": MANIFEST_FORMAT,
            "config": self.config,
            "info": self.info,
            "shards": sorted(self.shards, key=lambda s: s["shard"]),
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, self.path)
        except OSError as err:
            raise CorpusError(f"Could not write {self.path}: {err.strerror or err}.") from None

    def add(self, entry: dict[str, Any]) -> None:
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
                f"{path} has format {data.get('format')!r}; this jsae reads {MANIFEST_FORMAT}."
            )
        return Manifest(path, data["config"], data.get("info", {}), list(data["shards"]))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise CorpusError(f"{path} is corrupt ({err}); use a new --output folder.") from None


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
    listed = {s["file"] for s in manifest.shards}
    for path in output.iterdir():  # shards written after the last manifest update
        if SHARD_RE.match(path.name) and path.name not in listed:
            path.unlink()
    return manifest


# --------------------------------------------------------------------------------------
# Running


@dataclass
class CorpusRun:
    """What a corpus run did.

    Args:
        output: the output folder.
        manifest: its manifest after the run.
        shards: shards written by this run.
        tokens, windows, rows: ablated by this run.
        seconds: wall time of this run's ablation (source loading excluded).
        finished: whether the corpus (or ``max_tokens``) is exhausted.
    """

    output: Path
    manifest: Manifest
    shards: int
    tokens: int
    windows: int
    rows: int
    seconds: float
    finished: bool

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.nan


def run_corpus(
    job: CorpusJob,
    *,
    engine: str = "local",
    ray_config: Any = None,
    progress: CorpusProgress | None = None,
    max_windows: int | None = None,
) -> CorpusRun:
    """Ablate a corpus into ``job.output``, resuming whatever an earlier run finished.

    Args:
        job: the run.
        engine: ``"local"`` (this process) or ``"ray"`` (a Ray cluster; ``jsae[ray]``).
        ray_config: a ``jsae.ray_runner.RayConfig`` for the Ray engine (None: defaults).
        progress: called with (tokens done over all runs, max_tokens or None).
        max_windows: stop after this many new windows (for tests and dry runs).
    """
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    if engine == "ray":
        from jsae.ray_runner import check_ray

        check_ray()
    corpus = open_corpus(job.dataset, job.text_column, job.split)
    local = WindowEngine(job)
    info = {
        "dataset": str(job.dataset.resolve()),
        "source": job.source,
        "shard_tokens": local.shard_tokens,
    }
    manifest = open_output(job.output, local.identity(corpus), info)
    done = DoneSet(manifest.shards)
    before = manifest.tokens
    shards_before, windows_before, rows_before = (
        len(manifest.shards),
        manifest.windows,
        manifest.rows,
    )
    status: dict[str, bool] = {}
    units = local.plan(
        corpus,
        done,
        first_shard=manifest.next_shard(),
        tokens_before=before,
        max_windows=max_windows,
        status=status,
    )
    start = time.perf_counter()
    if engine == "ray":
        from jsae.ray_runner import run_units_on_ray

        def on_shard(entry: dict[str, Any]) -> None:
            manifest.add(entry)
            if progress is not None:
                progress(manifest.tokens, job.max_tokens)

        run_units_on_ray(job, units, on_shard, ray_config)
    else:
        _run_local(local, units, manifest, progress)
    seconds = time.perf_counter() - start
    return CorpusRun(
        output=job.output,
        manifest=manifest,
        shards=len(manifest.shards) - shards_before,
        tokens=manifest.tokens - before,
        windows=manifest.windows - windows_before,
        rows=manifest.rows - rows_before,
        seconds=seconds,
        finished=status.get("finished", False),
    )


def _run_local(
    engine: WindowEngine,
    units: Iterator[Unit],
    manifest: Manifest,
    progress: CorpusProgress | None,
) -> None:
    tokens = manifest.tokens
    max_tokens = engine.job.max_tokens

    def tick(n: int) -> None:
        nonlocal tokens
        tokens += n
        if progress is not None:
            progress(tokens, max_tokens)

    for unit in units:
        table, n = engine.run_unit(unit, tick)
        manifest.add(write_shard(engine.job.output, unit, table, n))


# --------------------------------------------------------------------------------------
# Statistics over shards


def shard_paths(output: str | os.PathLike) -> list[Path]:
    """The finished shards of an output folder, in order."""
    manifest = read_manifest(output)
    return [
        manifest.path.parent / s["file"] for s in sorted(manifest.shards, key=lambda s: s["shard"])
    ]


def corpus_stats(
    output: str | os.PathLike,
    eps: float | None = None,
    tolerance: Tolerance | None = None,
    batch_rows: int = 1 << 20,
) -> CorpusStats:
    """Statistics of every finished shard at ``eps`` (None: the run's ε), streamed in record
    batches of ``batch_rows``; never holds more than one batch in memory."""
    manifest = read_manifest(output)
    eps = check_eps(manifest.config["eps"] if eps is None else eps)
    stats = CorpusStats(eps, tolerance or Tolerance())
    for path in shard_paths(output):
        try:
            reader = pq.ParquetFile(path)
            batches = reader.iter_batches(
                batch_size=batch_rows, columns=["jacobian", "predicted", "diff"]
            )
            for batch in batches:
                stats = stats.merge(
                    CorpusStats.of(
                        batch.column("jacobian").to_numpy(),
                        batch.column("predicted").to_numpy(),
                        batch.column("diff").to_numpy(),
                        eps,
                        stats.tolerance,
                    )
                )
        except (OSError, pa.ArrowInvalid) as err:
            raise CorpusError(f"Could not read the shard {path}: {err}") from None
    return stats


def read_shards(output: str | os.PathLike, columns: list[str] | None = None):
    """All finished shards as one pandas DataFrame (only for outputs that fit in memory)."""
    tables = [pq.read_table(p, columns=columns) for p in shard_paths(output)]
    if not tables:
        return pa.Table.from_batches([], SHARD_SCHEMA).to_pandas()
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()
