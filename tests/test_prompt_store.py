"""The long-prompt store: texts by their SHA-256 prefix (hashlib here as the reference),
at most ``max_entries`` kept, the oldest removed first, nothing but a hash looked up."""

import hashlib
import os

from jsae.explore import PromptStore, prompt_hash


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
