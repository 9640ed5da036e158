"""A prompt cap limits the characters tokenized, not only the tokens kept: a huge prompt costs
what a long one does."""

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from transformer_lens import HookedTransformer

from jsae import explore
from jsae.errors import InputError
from jsae.loading import save_source
from jsae.prompt import CHARS_PER_TOKEN, hook_lock, tokenize
from tests.helpers import tiny_model, tiny_pair


@pytest.fixture
def tokenized(monkeypatch):
    """The length of every text handed to the tokenizer."""
    seen: list[int] = []
    real = HookedTransformer.to_tokens

    def spy(self, text, *args, **kwargs):
        seen.append(len(text))
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(HookedTransformer, "to_tokens", spy)
    return seen


def test_a_huge_prompt_is_cut_to_characters_before_tokenizing(tokenized):
    model = tiny_model()
    huge = "The quick brown fox jumps over the lazy dog. " * 60_000  # 2.7 MB
    prompt = tokenize(model, huge, max_tokens=12)
    assert tokenized == [12 * CHARS_PER_TOKEN]
    short = tokenize(model, huge[:400], max_tokens=12)
    assert prompt.tokens.tolist() == short.tokens.tolist() and len(prompt.tokens) == 12
    assert prompt.cut_chars == len(huge)
    assert "2,700,000 characters long" in prompt.notice
    assert "dropped to fit the limit of 12 tokens (BOS included)" in prompt.notice
    # the model's context is a cap too
    tokenize(model, huge)
    assert tokenized[-1] == model.cfg.n_ctx * CHARS_PER_TOKEN


def test_a_prompt_within_the_bound_is_tokenized_whole(tokenized):
    model = tiny_model()
    text = "word " * 30  # 150 characters: within 12 tokens' bound, longer than 12 tokens
    prompt = tokenize(model, text, max_tokens=12)
    assert tokenized == [len(text)] and prompt.cut_chars == 0
    assert prompt.notice.startswith(f"The prompt was {len(prompt.tokens) + prompt.dropped} tokens")


def test_a_text_of_exactly_the_bound_is_not_cut(tokenized):
    model = tiny_model()
    text = ("word " * 40)[: 12 * CHARS_PER_TOKEN]
    assert len(text) == 192
    prompt = tokenize(model, text, max_tokens=12)
    assert tokenized == [192] and prompt.cut_chars == 0
    assert prompt.dropped == len(model.to_tokens(text, truncate=False)[0]) - 12


def test_a_short_prompt_keeps_every_token_and_has_no_notice():
    model = tiny_model()
    prompt = tokenize(model, "The quick brown fox.")
    expected = model.to_tokens("The quick brown fox.", prepend_bos=True, truncate=False)[0]
    assert prompt.tokens.tolist() == expected.tolist()
    assert prompt.dropped == 0 and prompt.cut_chars == 0 and prompt.notice is None
    assert prompt.bos and int(prompt.tokens[0]) == model.tokenizer.bos_token_id


def test_bos_alone_fits_a_one_token_cap():
    model = tiny_model()
    prompt = tokenize(model, "The quick brown fox.", max_tokens=1)
    assert prompt.tokens.tolist() == [model.tokenizer.bos_token_id] and prompt.bos
    assert prompt.notice.endswith("dropped to fit the limit of 1 tokens (BOS included).")


def test_bos_is_prepended_even_when_the_model_would_not():
    model = tiny_model(default_prepend_bos=False)
    assert model.to_tokens("The quick brown fox.")[0, 0] != model.tokenizer.bos_token_id
    prompt = tokenize(model, "The quick brown fox.")
    assert int(prompt.tokens[0]) == model.tokenizer.bos_token_id and prompt.bos


def test_what_cannot_be_tokenized_is_refused_with_the_fix():
    model = tiny_model()
    for text in ("", " \n", None):
        with pytest.raises(InputError, match=r"^The prompt is empty: type some text to analyse\.$"):
            tokenize(model, text)
    model.tokenizer = None
    with pytest.raises(
        InputError, match=r"^The model has no tokenizer; load it with one to analyse text\.$"
    ):
        tokenize(model, "The quick brown fox.")


def test_hooked_forwards_on_one_model_share_one_lock():
    model, other = tiny_model(), tiny_model()
    assert hook_lock(model) is hook_lock(model)
    assert hook_lock(model) is not hook_lock(other)


def test_hosted_app_tokenizes_a_bounded_prefix(tmp_path, monkeypatch, tokenized):
    st.cache_resource.clear()
    st.cache_data.clear()
    model = tiny_model()
    source = str(save_source(tmp_path / "src", model, {"jsae": {0: tiny_pair(model, 0)}}))
    monkeypatch.setenv("JSAE_HOSTED", "1")
    monkeypatch.setenv("JSAE_ALLOWED_SOURCES", source)
    monkeypatch.setenv("JSAE_MAX_PROMPT_TOKENS", "12")
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, source)
    at = AppTest.from_file("../streamlit_app.py", default_timeout=60).run()
    at.text_area(key="prompt_text").set_value("lorem ipsum dolor " * 50_000).run()
    at.button(key="run_button").click().run()
    assert not at.exception and not at.error
    assert any("dropped to fit the limit of 12 tokens" in w.value for w in at.warning)
    assert tokenized and max(tokenized) <= 12 * CHARS_PER_TOKEN
