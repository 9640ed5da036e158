"""Cutting documents into windows and grouping the windows still to do into shards.

A document's tokens (tokenized without special tokens) are cut into *windows* of
``window_tokens`` tokens: BOS (when the tokenizer has one) followed by the next
``window_tokens - 1`` tokens of the document; the last window of a document may be shorter.
Windows never span two documents. Each window is ablated on its own, as a prompt would be, so
a window's rows do not depend on which shard it lands in. ``plan_units`` walks the corpus in
order, skips every window the manifest records as done (``DoneSet``) and hands out ``Unit``s
of about ``shard_tokens`` ablated tokens, one per shard to write.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from jsae.corpus.manifest import ShardEntry, WindowKey, WindowRef
from jsae.corpus.reader import Corpus


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
    def ref(self) -> WindowRef:
        return WindowRef(self.ordinal, self.document, self.index)


@dataclass
class Unit:
    """The windows of one shard.

    Args:
        shard: the shard's number (its file is ``SHARD_NAME.format(shard)``).
        windows: the windows, in corpus order.
    """

    shard: int
    windows: list[Window]


class Reach(NamedTuple):
    """How far a run of finished windows reaches: its last window, and whether that window is
    its document's last. Ordered as ``(ordinal, index, final)``, so ``max`` keeps the furthest."""

    ordinal: int
    index: int
    final: bool

    @classmethod
    def of(cls, entry: ShardEntry) -> Reach:
        return cls(entry.end.ordinal, entry.end.index, entry.final)

    def covers(self, key: WindowKey) -> bool:
        return WindowKey(self.ordinal, self.index) >= key

    def covers_document(self, ordinal: int) -> bool:
        return self.ordinal > ordinal or (self.ordinal == ordinal and self.final)

    def touches(self, start: WindowKey) -> bool:
        """Whether a run starting at ``start`` continues this one without a gap: it starts at
        or before the next window of the same document."""
        return start <= WindowKey(self.ordinal, self.index + 1)


class DoneSet:
    """The windows earlier runs finished: a union of corpus-order ranges, one per shard.

    A shard's range runs from its first to its last window; any window inside that it does not
    hold was skipped because another shard holds it, so the union of ranges is exactly the set
    of finished windows.
    """

    def __init__(self, shards: Iterable[ShardEntry]):
        # coalesce ranges that touch, so a document split over shards is known to be done as
        # a whole (a range starting a new document needs no coalescing: the running max of the
        # ends below already carries what came before)
        self.starts: list[WindowKey] = []
        ends: list[Reach] = []
        for entry in sorted(shards, key=lambda s: s.start.key):
            if ends and ends[-1].touches(entry.start.key):
                ends[-1] = max(ends[-1], Reach.of(entry))
            else:
                self.starts.append(entry.start.key)
                ends.append(Reach.of(entry))
        self.reach: list[Reach] = []  # running max of the ends, per coalesced range
        best = Reach(-1, -1, False)
        for end in ends:
            best = max(best, end)
            self.reach.append(best)

    def _reach(self, key: WindowKey) -> Reach | None:
        i = bisect.bisect_right(self.starts, key) - 1
        return self.reach[i] if i >= 0 else None

    def window_done(self, ordinal: int, index: int) -> bool:
        key = WindowKey(ordinal, index)
        reach = self._reach(key)
        return reach is not None and reach.covers(key)

    def document_done(self, ordinal: int) -> bool:
        """True when every window of the document is known to be done (no need to read it)."""
        reach = self._reach(WindowKey(ordinal, 0))
        return reach is not None and reach.covers_document(ordinal)


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
