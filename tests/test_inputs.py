"""What ``ablate`` takes: text, token ids (a 1-D tensor, array or list of ints) and a list of
prompts (one table with a ``prompt`` column), and one clear error for anything else. The
reference for token ids is the same prompt given as text (whose table the engine tests
check against the notebook loop); for a batch, each prompt ablated alone."""

import numpy as np
import pandas as pd
import pytest
import torch

from jsae.ablation import AblationBatch, AblationConfig, ablate
from jsae.analysis import effect_statistics
from jsae.errors import InputError
from jsae.table import PROMPT_COLUMN
from tests.helpers import tiny_model, tiny_pair

PROMPTS = ["The quick brown fox.", "def f(x):\n    return x + 1\n", "Alice: hi! Bob: hello."]


@pytest.fixture(scope="module")
def setup():
    model = tiny_model()
    return model, tiny_pair(model, layer=1)


@pytest.mark.parametrize("as_", ["tensor", "list", "array"])
def test_token_ids_give_the_table_of_the_text(setup, as_):
    model, pair = setup
    ids = model.to_tokens(PROMPTS[0])[0]  # BOS first, as the text's tokenization
    given = {"tensor": ids, "list": ids.tolist(), "array": ids.numpy()}[as_]
    by_ids = ablate(model, pair, given)
    by_text = ablate(model, pair, PROMPTS[0])
    pd.testing.assert_frame_equal(by_ids.table, by_text.table)
    assert by_ids.prompt.bos and by_ids.n_tokens == by_text.n_tokens


def test_token_ids_without_bos_ablate_every_position_and_cap_counts_them_all(setup):
    model, pair = setup
    ids = model.to_tokens(PROMPTS[0], prepend_bos=False)[0]
    result = ablate(model, pair, ids)
    assert result.n_tokens == len(ids) and not result.prompt.bos
    capped = ablate(model, pair, ids, max_ablated=3)
    assert capped.n_tokens == 3 and capped.prompt.dropped == len(ids) - 3


def test_a_list_of_prompts_is_one_table_with_a_prompt_column(setup):
    model, pair = setup
    given = [PROMPTS[0], model.to_tokens(PROMPTS[1])[0], PROMPTS[2]]
    calls = []
    batch = ablate(model, pair, given, progress=lambda done, total: calls.append((done, total)))
    assert isinstance(batch, AblationBatch)
    table = batch.table
    assert table.columns[0] == PROMPT_COLUMN and table[PROMPT_COLUMN].dtype == np.int32
    alone = [ablate(model, pair, p).table for p in (PROMPTS[0], PROMPTS[1], PROMPTS[2])]
    for k, expected in enumerate(alone):
        part = table[table[PROMPT_COLUMN] == k].drop(columns=PROMPT_COLUMN).reset_index(drop=True)
        part["token"] = part["token"].astype(str)
        expected = expected.assign(token=expected["token"].astype(str))
        pd.testing.assert_frame_equal(part, expected)
    assert batch.n_tokens == sum(r.n_tokens for r in batch.results)
    assert calls[-1] == (batch.n_tokens, batch.n_tokens)  # one progress over the batch
    assert effect_statistics(table, 0.01, n_bootstrap=0).n_tokens == batch.n_tokens
    resplit = batch.with_eps(0.2)
    assert (
        resplit.eps == 0.2 and (resplit.table["important"] == (table["jacobian"].abs() > 0.2)).all()
    )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"text": "hi"}, "A prompt is text"),
        (7, "A prompt is text"),
        (None, "A prompt is text"),
        ([], "list of prompts is empty"),
        ([["a", "b"]], "A prompt is text"),
        (torch.zeros(2, 3, dtype=torch.long), "1-D sequence of integers"),
        (torch.tensor([0.5, 1.0]), "1-D sequence of integers"),
        (torch.tensor([], dtype=torch.long), "token ids are empty"),
        ([10**9], "from 0 to"),
        ("   ", "The prompt is empty"),
    ],
)
def test_anything_else_is_one_clear_error(setup, given, message):
    model, pair = setup
    with pytest.raises(InputError, match=message):
        ablate(model, pair, given)


def test_a_batch_refuses_a_bad_member_before_any_work(setup):
    model, pair = setup
    with pytest.raises(InputError, match="A prompt is text"):
        ablate(model, pair, [PROMPTS[0], 3.5], config=AblationConfig())
