"""Reading corpora lazily: a text file, a folder of ``.txt`` files, or a HF dataset on disk.

A folder's files are taken sorted by path, each file one document; a Hugging Face dataset
saved with ``save_to_disk`` gives one document per row of its text column. Text files are read
in blocks of about ``BLOCK_CHARS`` characters cut at line ends, dataset rows one at a time, so
no document is held whole before it is tokenized. Text files must be UTF-8: a file that is not
(a binary file given by mistake) is refused when the corpus is opened, from its first bytes,
or when its turn comes, never read as replacement characters.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsae.corpus.job import CorpusError
from jsae.errors import InputError, first_line, os_reason

BLOCK_CHARS = 1 << 20
SNIFF_BYTES = 1 << 13
"""Bytes of each text file read when the corpus is opened, to refuse binary files at once."""
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


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


def check_text_file(path: Path) -> None:
    """Refuse a file that is not UTF-8 text, judged by its first ``SNIFF_BYTES`` (reading it
    whole checks the rest)."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as err:
        raise CorpusError(f"Could not read {path}: {os_reason(err)}.") from None
    if b"\x00" in head:
        raise CorpusError(f"{path} is not text (it holds NUL bytes); a corpus is UTF-8 text.")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:  # not just a character the sniff cut in two
            raise CorpusError(_not_utf8(path, err)) from None


def _not_utf8(path: Path, err: UnicodeDecodeError) -> str:
    return f"{path} is not UTF-8 text ({first_line(err)}); a corpus is UTF-8 text."


def _file_blocks(path: Path) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
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
    except UnicodeDecodeError as err:
        raise CorpusError(_not_utf8(path, err)) from None
    except OSError as err:
        raise CorpusError(f"Could not read {path}: {os_reason(err)}.") from None


def open_corpus(
    path: str | os.PathLike, text_column: str = "text", split: str | None = None
) -> Corpus:
    """A text file, a folder of .txt files, or a HF dataset folder (``save_to_disk``)."""
    path = Path(path).expanduser()
    if path.is_file():
        check_text_file(path)
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
    for file in files:
        check_text_file(file)
    return Corpus(path, "text", files=files)


def _open_hf(path: Path, text_column: str, split: str | None) -> Corpus:
    try:
        # `datasets` is optional (only HF corpora need it), so it is imported on first use
        import datasets
    except ImportError:
        raise CorpusError(
            f"{path} is a Hugging Face dataset; reading it needs `pip install datasets`."
        ) from None
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as err:  # datasets raises FileNotFoundError, ArrowInvalid, ...
        raise CorpusError(f"Could not open the dataset {path}: {first_line(err)}") from None
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
