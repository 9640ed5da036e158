"""The demo's corpus: the standard library's English text, dealt into splits.

The docstrings of the standard library's modules, classes and functions (``ast``, files in
sorted order, duplicates dropped), the reference manual's topics that ship as
``pydoc_data/topics.py``, and the library's ``.rst``/``.txt`` files. Whole source units (a
file, or one pydoc topic) are dealt, in a seeded random order, into the three ``SPLITS``
by share of characters.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jsae.demo.settings import SPLITS


@dataclass(frozen=True)
class Document:
    """One piece of text and the source unit it comes from (a file, or a pydoc topic)."""

    unit: str
    text: str


def stdlib_documents(max_chars: int | None = None, min_chars: int = 20) -> list[Document]:
    """The standard library's English text, in a fixed order (see the module docstring).

    Docstrings shorter than ``min_chars`` and exact repeats are dropped. Files that do not
    parse (Python 2 test data) are skipped.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: list[Document] = []
    seen: set[str] = set()
    total = 0

    def add(unit: str, text: str) -> bool:
        nonlocal total
        text = text.strip()
        if len(text) < min_chars or text in seen:
            return False
        seen.add(text)
        docs.append(Document(unit, text))
        total += len(text)
        return max_chars is not None and total >= max_chars

    for path in _stdlib_files(root):
        rel = path.relative_to(root).as_posix()
        if path.suffix in (".rst", ".txt"):
            try:
                if add(rel, path.read_text(encoding="utf-8")):
                    return docs
            except UnicodeDecodeError:
                continue
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        if rel == "pydoc_data/topics.py":
            for key, text in sorted(_pydoc_topics(tree).items()):
                if add(f"{rel}:{key}", text):
                    return docs
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                text = ast.get_docstring(node)
                if text and add(rel, text):
                    return docs
    return docs


def _stdlib_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in ("site-packages", "dist-packages", "__pycache__")
            and not d.startswith("config-")
        )
        for name in sorted(filenames):
            if name.endswith((".py", ".rst", ".txt")):
                yield Path(dirpath) / name


def _pydoc_topics(tree: ast.Module) -> dict[str, str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    return {}


def split_documents(
    docs: list[Document], seed: int, heldout_fraction: float, sae_fraction: float
) -> dict[str, list[Document]]:
    """Deal whole units into ``lm`` / ``sae`` / ``heldout`` by share of characters."""
    by_unit: dict[str, list[Document]] = {}
    for doc in docs:
        by_unit.setdefault(doc.unit, []).append(doc)
    units = sorted(by_unit)
    order = np.random.default_rng([seed, 1]).permutation(len(units))
    total = sum(len(d.text) for d in docs)
    share = {"heldout": heldout_fraction, "sae": sae_fraction}
    share["lm"] = 1 - heldout_fraction - sae_fraction
    splits: dict[str, list[Document]] = {name: [] for name in SPLITS}
    filled = dict.fromkeys(SPLITS, 0)
    for i in order:
        unit_docs = by_unit[units[i]]
        # the split furthest below its share takes the next unit
        name = max(SPLITS, key=lambda s: share[s] * total - filled[s])
        splits[name].extend(unit_docs)
        filled[name] += sum(len(d.text) for d in unit_docs)
    return splits


def corpus_digest(docs: list[Document]) -> str:
    digest = hashlib.sha256()
    for doc in docs:
        digest.update(doc.unit.encode())
        digest.update(b"\0")
        digest.update(doc.text.encode())
        digest.update(b"\0")
    return digest.hexdigest()
