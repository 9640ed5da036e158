"""The default prompts: a handful of kinds, each a sensible length for an ablation."""

from __future__ import annotations

import pytest

from jsae.example_texts import DEFAULT_PROMPTS
from jsae.loading import DEMO_DIR
from jsae.prompt import check_prompt_text


def test_default_prompts_cover_the_kinds():
    assert {"Prose", "Code", "List", "Dialogue"} <= set(DEFAULT_PROMPTS)
    for name, text in DEFAULT_PROMPTS.items():
        assert check_prompt_text(text) == text, name
        assert text == text.strip("\n ") + ("\n" if text.endswith("\n") else ""), name
    assert len(set(DEFAULT_PROMPTS.values())) == len(DEFAULT_PROMPTS)
    assert "def " in DEFAULT_PROMPTS["Code"]
    assert DEFAULT_PROMPTS["List"].count("\n- ") >= 3
    assert DEFAULT_PROMPTS["Dialogue"].count(":") >= 4


@pytest.mark.skipif(not (DEMO_DIR / "model" / "tokenizer.json").is_file(), reason="no bundle")
def test_default_prompts_are_40_to_150_tokens_for_the_bundled_tokenizer():
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(DEMO_DIR / "model"))
    for name, text in DEFAULT_PROMPTS.items():
        n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        assert 40 <= n <= 150, (name, n)
