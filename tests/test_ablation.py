import numpy as np
import pandas as pd
import pytest
import torch

from jsae.ablation import AblationConfig, ablate, ablate_activations
from jsae.errors import InputError
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
