"""The long-prompt stores: texts by their SHA-256 prefix (hashlib here as the reference),
at most ``max_entries`` kept, the oldest removed first, nothing but a hash looked up; the
hosted demo's in-memory store against a plain-list least-recently-used reference."""

import hashlib
import os

import numpy as np

from jsae.explore import MemoryPromptStore, PromptStore, prompt_hash


def test_a_prompt_is_kept_by_its_hash(tmp_path):
    store = PromptStore(tmp_path / "prompts")
    text = "über " * 400
    key = store.put(text)
    assert key == prompt_hash(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    assert store.get(key) == text
    assert PromptStore(tmp_path / "prompts").get(key) == text  # another process reads it
    assert store.get("0" * 16) is None
    assert store.get("../../etc/passwd") is None and store.get("") is None


def test_a_changed_file_is_not_served_under_the_old_hash(tmp_path):
    store = PromptStore(tmp_path)
    key = store.put("the original text")
    (tmp_path / f"{key}.txt").write_text("something else")
    assert store.get(key) is None


def test_only_the_newest_entries_are_kept(tmp_path):
    store = PromptStore(tmp_path, max_entries=3)
    keys = []
    for i in range(5):
        keys.append(store.put(f"prompt {i}"))
        os.utime(tmp_path / f"{keys[-1]}.txt", (1000 + i, 1000 + i))  # distinct ages
    store.put("prompt 4")  # already there: only made the newest
    assert [store.get(k) is not None for k in keys] == [False, False, True, True, True]
    assert len(list(tmp_path.glob("*.txt"))) == 3
    assert store.put("x" * 200_001) is None


def lru_reference(texts, max_entries, max_chars):
    """What a least-recently-used store holds after ``texts`` are put in turn: a plain list,
    newest last, trimmed from the front."""
    kept = []
    for text in texts:
        if text in kept:
            kept.remove(text)
        kept.append(text)
        while len(kept) > max_entries or sum(map(len, kept)) > max_chars:
            kept.pop(0)
    return kept


def test_the_memory_store_keeps_the_recently_used_within_its_bounds():
    rng = np.random.default_rng(0)
    pool = [f"prompt {i} " * int(n) for i, n in enumerate(rng.integers(1, 30, size=12))]
    texts = [pool[i] for i in rng.integers(0, len(pool), size=200)]
    store = MemoryPromptStore(max_entries=5, max_chars=600)
    for text in texts:
        assert store.put(text) == hashlib.sha256(text.encode()).hexdigest()[:16]
    kept = lru_reference(texts, 5, 600)
    assert {t for t in pool if store.get(prompt_hash(t)) is not None} == set(kept)
    assert store.get("0" * 16) is None and store.get("") is None
    assert store.put("x" * 601) is None  # longer than the store may hold at all


def test_a_get_counts_as_a_use():
    store = MemoryPromptStore(max_entries=2)
    a, b = store.put("a" * 10), store.put("b" * 10)
    assert store.get(a) == "a" * 10  # a is now the most recently used
    store.put("c" * 10)
    assert store.get(a) is not None and store.get(b) is None


def test_the_memory_store_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    MemoryPromptStore().put("über " * 400)
    assert list(tmp_path.iterdir()) == []
    assert "memory only" in MemoryPromptStore().note and "another server" in PromptStore(".").note
