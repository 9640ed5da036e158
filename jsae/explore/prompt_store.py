"""Prompts too long for a URL, kept by their content hash so that a link can still name them.

A prompt longer than ``MAX_URL_TEXT`` characters goes into the link as ``prompt_hash``: the
first 16 hex digits of the SHA-256 of its UTF-8 text (64 bits: a collision among the few
thousand prompts a server keeps is vanishingly unlikely, and ``get`` checks the text's hash
anyway). The text itself stays on the server, in one small file per prompt under a folder
(the app's: ``<jsae cache>/prompts``), at most ``max_entries`` of them, the least recently
written removed first. A link to a prompt the server does not hold (another server's, or
one removed since) opens the default prompt with a warning saying so.

A hosted demo writes nothing its visitors type to disk: it keeps long prompts in memory
only (``MemoryPromptStore``), bounded by a count and a total length, the least recently used
dropped first, and gone when the server restarts. Each store says in ``note`` what a link to
a long prompt can and cannot do, for the page to show.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path

HASH_DIGITS = 16
HASH_PATTERN = re.compile(rf"[0-9a-f]{{{HASH_DIGITS}}}")
MAX_PROMPT_CHARS = 200_000
"""Longer texts are not stored (a model's context is far shorter)."""


def prompt_hash(text: str) -> str:
    """The first ``HASH_DIGITS`` hex digits of SHA-256 over ``text``'s UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_DIGITS]


class PromptStore:
    """Long prompts by their hash, one ``<hash>.txt`` file each in ``folder``.

    Attributes:
        note: what a link to a long prompt does with this store, for the page.

    Args:
        folder: where the texts live (created on the first ``put``).
        max_entries: how many texts to keep; the oldest written go first.
    """

    note = "this server keeps the text, so the link opens it here, not on another server."

    def __init__(self, folder: str | os.PathLike, max_entries: int = 1000) -> None:
        self.folder = Path(folder)
        self.max_entries = max_entries

    def put(self, text: str) -> str | None:
        """Keep ``text``; its hash, or None when it is too long to keep."""
        if len(text) > MAX_PROMPT_CHARS:
            return None
        key = prompt_hash(text)
        path = self.folder / f"{key}.txt"
        if path.is_file():
            path.touch()  # recently used: removed last
            return key
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)  # never a half-written prompt under its name
        self._trim()
        return key

    def get(self, key: str) -> str | None:
        """The text stored under ``key``, or None (unknown key, or not a hash at all)."""
        if not HASH_PATTERN.fullmatch(key or ""):
            return None
        try:
            text = (self.folder / f"{key}.txt").read_text(encoding="utf-8")
        except OSError:
            return None
        return text if prompt_hash(text) == key else None

    def _trim(self) -> None:
        files = sorted(self.folder.glob("*.txt"), key=lambda p: p.stat().st_mtime)
        for old in files[: max(len(files) - self.max_entries, 0)]:
            old.unlink(missing_ok=True)


class MemoryPromptStore:
    """Long prompts by their hash in this process's memory only (a hosted demo's): at most
    ``max_entries`` texts and ``max_chars`` characters together, the least recently used
    dropped first; nothing survives a restart. Safe to share between sessions' threads.

    Args:
        max_entries: how many texts to keep.
        max_chars: how many characters all kept texts may hold together.
    """

    def __init__(self, max_entries: int = 200, max_chars: int = 2_000_000) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()

    @property
    def note(self) -> str:
        return (
            f"this demo keeps the text in memory only (its last {self.max_entries} long "
            "prompts, until it restarts), so the link opens it here for a while, not on "
            "another server or after a restart."
        )

    def put(self, text: str) -> str | None:
        """Keep ``text``; its hash, or None when it is longer than the store may hold."""
        if len(text) > min(MAX_PROMPT_CHARS, self.max_chars):
            return None
        key = prompt_hash(text)
        with self._lock:
            if key not in self._texts:
                self._texts[key] = text
                self._chars += len(text)
            self._texts.move_to_end(key)
            while len(self._texts) > self.max_entries or self._chars > self.max_chars:
                _, old = self._texts.popitem(last=False)
                self._chars -= len(old)
        return key

    def get(self, key: str) -> str | None:
        """The text kept under ``key``, or None."""
        with self._lock:
            text = self._texts.get(key or "")
            if text is not None:
                self._texts.move_to_end(key)
        return text
