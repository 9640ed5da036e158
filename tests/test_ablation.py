import re

import numpy as np
import pandas as pd
import pytest
import torch

from jsae.ablation import (
    CHUNK_TOKENS,
    FLOAT32_MAX,
    ROW_BLOCK_BYTES,
    AblationConfig,
    _perturbed_out_acts,
    _row_bytes,
    _token_bytes,
    ablate,
    ablate_activations,
    rows_per_block,
    tokens_per_chunk,
)
from jsae.errors import InputError, NumericError
from jsae.prompt import mlp_inputs, tokenize
from jsae.sandwich import Sandwich
from jsae.table import COLUMNS, check_eps, split
from tests.helpers import tiny_model, tiny_pair
from tests.reference import notebook_jacobian, notebook_loop

PROMPT = "The quick brown fox jumps over the lazy dog. def f(x): return x"
ATOL = 1e-5  # float32, engine vs the notebook's loop


@pytest.mark.parametrize(
    ("mode", "scale"), [("unit", 1.0), ("zero", 1.0), ("scale", 2.5), ("scale", -0.7)]
)
@pytest.mark.parametrize("act_fn", ["gelu", "relu"])
@pytest.mark.parametrize("folded", [False, True], ids=["LN", "folded"])
def test_engine_equals_the_notebook_loop(mode, scale, act_fn, folded):
    model = tiny_model(act_fn=act_fn, folded=folded)
    pair = tiny_pair(model, layer=1, d_sae=48, k=6, apply_b_dec_to_input=True)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[:12]
    expected = notebook_loop(model, pair, x, mode=mode, scale=scale)
    jacobian = notebook_jacobian(model, pair, x)
    got = ablate_activations(Sandwich(model, pair), x, AblationConfig(mode=mode, scale=scale))
    keys = list(
        zip(got.position.tolist(), got.in_feature.tolist(), got.out_feature.tolist(), strict=True)
    )
    assert sorted(keys) == sorted(expected), "the engine covers exactly the loop's connections"
    assert sorted(keys) == sorted(jacobian)
    # every column the loop and autograd give independently of the engine
    want = {
        name: np.array([expected[key][name] for key in keys])
        for name in ("in_act", "out_act", "diff")
    }
    want["jacobian"] = np.array([jacobian[key] for key in keys])
    want["predicted"] = -np.array([expected[key]["s"] for key in keys]) * want["jacobian"]
    for name, values in want.items():
        np.testing.assert_allclose(
            getattr(got, name).numpy(), values, atol=ATOL, rtol=0, err_msg=name
        )
    # both experiments: the engine is exact on important and unimportant connections alike
    important = got.jacobian.abs() > 0.01
    assert important.any() and (~important).any()
    # features that dropped out of the top k read 0 (diff == -out_act) and are covered
    dropped = got.diff == -got.out_act
    assert dropped.any(), "the random pair should knock some output features out of the top k"


def test_chunking_does_not_change_results():
    model = tiny_model()
    pair = tiny_pair(model, layer=0, d_sae=40, k=5)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 0)
    sandwich = Sandwich(model, pair)
    whole = ablate_activations(sandwich, x, AblationConfig())
    calls = []
    tiny_budget = AblationConfig(memory_budget=1)  # one token per chunk
    chunked = ablate_activations(
        sandwich, x, tiny_budget, progress=lambda d, t: calls.append((d, t))
    )
    for name in ("position", "in_feature", "out_feature"):
        torch.testing.assert_close(getattr(whole, name), getattr(chunked, name), atol=0, rtol=0)
    for name in ("diff", "jacobian", "predicted"):  # batch shape changes BLAS rounding only
        torch.testing.assert_close(getattr(whole, name), getattr(chunked, name), atol=1e-6, rtol=0)
    assert calls == [(i + 1, len(x)) for i in range(len(x))]


def test_predicted_is_minus_s_times_jacobian_and_first_order_correct():
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=48, k=6)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)
    small = ablate_activations(Sandwich(model, pair), x, AblationConfig(mode="scale", scale=1e-3))
    torch.testing.assert_close(small.predicted, -1e-3 * small.jacobian)
    # for a tiny step, features that stay active change by the first-order prediction
    stay = small.diff != -small.out_act
    err = (small.diff - small.predicted)[stay].abs()
    assert err.max() < 1e-4, err.max()


def test_ablate_builds_the_tidy_table_and_skips_bos():
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=48, k=6, k_out=4)
    result = ablate(model, pair, PROMPT, eps=0.05)
    table = result.table
    assert tuple(table.columns) == COLUMNS
    n_tokens = len(result.prompt.tokens) - 1
    assert result.n_tokens == n_tokens
    assert len(table) == n_tokens * 6 * 4
    assert table["position"].min() == 1, "BOS (position 0) is excluded by default"
    assert list(table["token"].iloc[:24].astype(str)) == [result.prompt.strings[1]] * 24
    np.testing.assert_array_equal(table["important"], table["jacobian"].abs() > 0.05)
    with_bos = ablate(model, pair, PROMPT, config=AblationConfig(include_bos=True))
    assert with_bos.table["position"].min() == 0 and with_bos.n_tokens == n_tokens + 1
    pd.testing.assert_frame_equal(
        with_bos.table[with_bos.table.position > 0]
        .reset_index(drop=True)
        .drop(columns=["token", "important"]),
        table.drop(columns=["token", "important"]),
    )


def test_eps_only_resplits():
    model = tiny_model()
    result = ablate(model, tiny_pair(model), PROMPT, eps=0.01)
    resplit = result.with_eps(0.1)
    pd.testing.assert_series_equal(result.table["diff"], resplit.table["diff"])
    assert resplit.table["important"].sum() < result.table["important"].sum()
    assert result.table["important"].sum() == (result.table["jacobian"].abs() > 0.01).sum()


@pytest.mark.parametrize("eps", [0, -1, float("nan"), float("inf"), "abc", None, True])
def test_bad_eps_is_refused(eps):
    with pytest.raises(InputError, match="ε must be"):
        check_eps(eps)
    with pytest.raises(InputError):
        split(pd.DataFrame({"jacobian": [0.1]}), eps)


def test_bad_prompts_and_modes_are_refused():
    model = tiny_model()
    pair = tiny_pair(model)
    for text in ["", "   \n\t"]:
        with pytest.raises(InputError, match="prompt is empty"):
            ablate(model, pair, text)
    with pytest.raises(InputError, match="Mode must be one of"):
        AblationConfig(mode="half")
    with pytest.raises(InputError, match="scale must be a finite number"):
        AblationConfig(mode="scale", scale=float("nan"))


def test_long_prompts_are_truncated_with_a_notice():
    model = tiny_model(n_ctx=16)
    result = ablate(model, tiny_pair(model), PROMPT * 3)
    prompt = result.prompt
    assert len(prompt.tokens) == 16 and prompt.dropped > 0
    full = len(model.to_tokens(PROMPT * 3, truncate=False)[0])
    assert prompt.dropped == full - 16
    assert f"the last {prompt.dropped} were dropped" in prompt.notice
    capped = ablate(model, tiny_pair(model), PROMPT, max_tokens=5)
    assert len(capped.prompt.tokens) == 5 and capped.n_tokens == 4


@pytest.mark.parametrize("budget", [1, 7000, 17920, 1 << 30])
def test_row_blocks_do_not_change_results(budget):
    """Blocks of rows: pieces of one token, two whole tokens, or all tokens of a chunk at once."""
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=40, k=5)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)
    sandwich = Sandwich(model, pair)
    whole = ablate_activations(sandwich, x, AblationConfig(memory_budget=1 << 34))
    calls = []
    blocked = ablate_activations(
        sandwich, x, AblationConfig(memory_budget=budget), progress=lambda d, t: calls.append(d)
    )
    for name in ("position", "in_feature", "out_feature"):
        torch.testing.assert_close(getattr(whole, name), getattr(blocked, name), atol=0, rtol=0)
    for name in ("in_act", "out_act", "diff", "jacobian", "predicted"):
        torch.testing.assert_close(getattr(whole, name), getattr(blocked, name), atol=1e-6, rtol=0)
    assert calls == sorted(set(calls)) and calls[-1] == len(x), "progress only moves forward"


def test_config_boundaries_and_refusals():
    """The largest float32 scale is accepted, 0 and anything past it refused; the budget
    must be a positive whole number of bytes (1 is the smallest); the messages say why."""
    assert AblationConfig(mode="scale", scale=FLOAT32_MAX).scale == FLOAT32_MAX
    assert AblationConfig(mode="scale", scale=-FLOAT32_MAX).scale == -FLOAT32_MAX
    assert AblationConfig(mode="scale", scale=1).scale == 1
    with pytest.raises(InputError, match="within float32's range"):
        AblationConfig(mode="scale", scale=FLOAT32_MAX * (1 + 2**-52))
    with pytest.raises(
        InputError,
        match=r"^The scale must not be 0: s = 0 perturbs nothing \(a zero step moves no input "
        r"feature\), so nothing would move and the ratio would mean nothing\. Pick a non-zero "
        r"s\.$",
    ):
        AblationConfig(mode="scale", scale=0)
    with pytest.raises(InputError, match=r"^Mode must be one of unit, zero, scale; got 'half'\.$"):
        AblationConfig(mode="half")
    assert AblationConfig(memory_budget=1).memory_budget == 1
    for budget in (0, -1, True, 1.5, 2.0**40, "1GB"):
        with pytest.raises(
            InputError,
            match=rf"^The memory budget must be a positive whole number of bytes, got "
            rf"{re.escape(repr(budget))}\.$",
        ):
            AblationConfig(memory_budget=budget)


def test_unit_mode_steps_by_one_whatever_the_scale():
    """``scale`` is ignored outside scale mode: unit steps by 1 (predicted = −J)."""
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=32, k=4)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[:4]
    got = ablate_activations(Sandwich(model, pair), x, AblationConfig(mode="unit", scale=2.5))
    torch.testing.assert_close(got.predicted, -got.jacobian, atol=0, rtol=0)


def _block_sizes_fit(pair, d_model, d_mlp, budget):
    """The documented sizing, checked as inequalities on the byte estimates: a block of rows
    takes at most half the budget (and ROW_BLOCK_BYTES), holds whole tokens' k_in rows when
    one token fits, and is as large as that allows; a chunk's tokens fit what the block
    leaves, as many as fit, at least 1 and at most CHUNK_TOKENS."""
    k, row, token = pair.k_in, _row_bytes(pair, d_model, d_mlp), _token_bytes(pair, d_model, d_mlp)
    rows = rows_per_block(pair, d_model, d_mlp, budget)
    half = min(budget // 2, ROW_BLOCK_BYTES)
    assert rows >= 1
    assert rows * row <= half or rows == 1
    if rows >= k:
        assert rows % k == 0 and (rows + k) * row > half
    else:
        assert (rows + 1) * row > half
    chunk = tokens_per_chunk(pair, d_model, d_mlp, budget)
    assert 1 <= chunk <= CHUNK_TOKENS
    assert rows * row + chunk * token <= budget or chunk == 1
    assert rows * row + (chunk + 1) * token > budget or chunk == CHUNK_TOKENS


def test_blocks_and_chunks_are_sized_as_documented():
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=40, k=5, k_out=3)
    d_model, d_mlp = model.cfg.d_model, model.cfg.d_mlp
    row, token = _row_bytes(pair, d_model, d_mlp), _token_bytes(pair, d_model, d_mlp)
    budgets = [1, 2 * row - 1, 2 * row, 10 * row, 10 * row + token, 10 * row + 3 * token - 1]
    budgets += [4 * row * pair.k_in + 5 * token, 1 << 20, 1 << 30, 1 << 34]
    for budget in budgets:
        _block_sizes_fit(pair, d_model, d_mlp, budget)


def test_each_perturbed_row_is_computed_once_into_one_reused_buffer(monkeypatch):
    """Whatever the blocking, every (token, active input feature) row of a chunk goes through
    the output SAE exactly once, every block writes its pre-activations into the same
    [block rows, d_sae_out] buffer, and the results equal the one-block results."""
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=40, k=5)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)
    sandwich = Sandwich(model, pair)
    base = sandwich(x)
    s = AblationConfig().perturbation(base.in_act)
    whole = _perturbed_out_acts(sandwich, base, s, 1 << 34)
    real = Sandwich.perturbed_out_acts
    seen = []

    def spy(self, pre, in_idx, s, out_idx, buffer=None, out=None):
        seen.append((in_idx.numel(), buffer, None if buffer is None else tuple(buffer.shape)))
        return real(self, pre, in_idx, s, out_idx, buffer=buffer, out=out)

    monkeypatch.setattr(Sandwich, "perturbed_out_acts", spy)
    for budget in (1, 7000, 17920, 1 << 30):
        seen.clear()
        got = _perturbed_out_acts(sandwich, base, s, budget)
        assert got.exited.dtype == torch.bool and got.entered.dtype == torch.int64
        for name in ("acts", "pre", "exited", "entered"):
            torch.testing.assert_close(getattr(got, name), getattr(whole, name), atol=1e-6, rtol=0)
        assert sum(rows for rows, _, _ in seen) == len(x) * pair.k_in, budget
        assert all(buffer is not None for _, buffer, _ in seen)
        assert len({buffer.untyped_storage().data_ptr() for _, buffer, _ in seen}) == 1
        for rows, _, shape in seen:  # the shape it was handed (addmm may resize its out)
            assert shape == (rows, pair.d_sae_out)


def test_non_finite_values_stop_the_run_naming_where():
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=32, k=4)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[:6].clone()
    x[4, 0] = float("nan")
    sandwich = Sandwich(model, pair)
    with pytest.raises(NumericError, match=r"appeared in the MLP input at positions 10\.\.15:"):
        ablate_activations(sandwich, x, AblationConfig(), positions=torch.arange(10, 16))
    huge = AblationConfig(mode="scale", scale=FLOAT32_MAX)  # diff stays finite: exits read 0
    with pytest.raises(NumericError, match=r"appeared in the pre-activation change at positions"):
        ablate_activations(sandwich, x[:4], huge)


def test_a_prompt_with_nothing_to_ablate_gives_an_empty_table():
    model = tiny_model()
    result = ablate(model, tiny_pair(model), PROMPT, max_tokens=1)
    assert result.n_tokens == 0 and len(result.table) == 0
    assert tuple(result.table.columns) == COLUMNS


def test_max_ablated_counts_ablated_tokens_not_bos():
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=32, k=4)
    n_prompt = len(tokenize(model, PROMPT).tokens)
    one = ablate(model, pair, PROMPT, max_ablated=1)
    assert one.n_tokens == 1 and set(one.table["position"]) == {1}
    three = ablate(model, pair, PROMPT, max_ablated=3)
    assert three.n_tokens == 3 and len(three.prompt.tokens) == 4
    with_bos = ablate(model, pair, PROMPT, max_ablated=2, config=AblationConfig(include_bos=True))
    assert with_bos.n_tokens == 2 and set(with_bos.table["position"]) == {0, 1}
    capped = ablate(model, pair, PROMPT, max_ablated=5, max_tokens=3)
    assert capped.n_tokens == 2, "the smaller cap wins"
    loose = ablate(model, pair, PROMPT, max_ablated=5 * n_prompt, max_tokens=4)
    assert loose.n_tokens == 3
    everything = ablate(model, pair, PROMPT, max_ablated=5 * n_prompt)
    assert everything.n_tokens == n_prompt - 1
    for bad in (0, -2, True):
        with pytest.raises(
            InputError, match=rf"^At least one token must be ablated, got {bad!r}\.$"
        ):
            ablate(model, pair, PROMPT, max_ablated=bad)


def test_ablate_reports_progress_and_keeps_its_settings():
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=32, k=4)
    config = AblationConfig(mode="zero", memory_budget=1)
    calls = []
    result = ablate(model, pair, PROMPT, config=config, progress=lambda d, t: calls.append((d, t)))
    n = result.n_tokens
    assert calls == [(i + 1, n) for i in range(n)]
    assert result.config is config
    assert (result.layer, result.kind, result.k_in, result.k_out) == (1, "jsae", 4, 4)


def test_a_model_without_a_tokenizer_is_refused():
    model = tiny_model()
    pair = tiny_pair(model)
    model.tokenizer = None
    with pytest.raises(InputError, match="no tokenizer"):
        ablate(model, pair, PROMPT)
