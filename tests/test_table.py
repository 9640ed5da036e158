"""The per-connection table's one-place rules: the ε split, connections → table, export,
and the other single definitions (first line of an error, the BOS skip, the tolerance)."""

import io

import numpy as np
import pandas as pd
import pytest
import torch

from jsae.ablation import AblationConfig, ablate, ablate_activations
from jsae.corpus import ExperimentStats
from jsae.errors import InputError, first_line, os_reason
from jsae.prompt import first_ablated, mlp_inputs, token_strings, tokenize
from jsae.sandwich import Sandwich
from jsae.stats import (
    SUMMARY_COLUMNS,
    Tolerance,
    empty_summary,
    summarize,
    summary_frame,
    within_tolerance,
)
from jsae.table import (
    COLUMNS,
    TABLE_FORMATS,
    connection_columns,
    connections_table,
    exited_flags,
    is_important,
    split,
    table_bytes,
    table_format,
    write_table,
)
from tests.helpers import tiny_model, tiny_pair

PROMPT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def run():
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=32, k=4)
    prompt = tokenize(model, PROMPT)
    x = mlp_inputs(model, prompt.tokens, 1)
    positions = torch.arange(len(prompt.tokens))
    connections = ablate_activations(Sandwich(model, pair), x, AblationConfig(), positions)
    return model, pair, prompt, connections


def test_is_important_is_abs_j_strictly_greater_than_eps_for_numpy_and_torch():
    values = [-0.5, -0.01, 0.0, 0.005, 0.01, 0.0100001, 2.0]
    expected = [True, False, False, False, False, True, True]  # |J| <= ε is unimportant
    assert is_important(np.array(values), 0.01).tolist() == expected
    assert is_important(torch.tensor(values, dtype=torch.float64), 0.01).tolist() == expected
    assert is_important(pd.Series(values), 0.01).tolist() == expected


def test_split_marks_important_by_the_rule_and_keeps_the_input(run):
    _, _, prompt, connections = run
    table = connections_table(connections, prompt.strings, 0.01)
    resplit = split(table, 0.05)
    assert resplit["important"].tolist() == [abs(j) > 0.05 for j in table["jacobian"]]
    assert table["important"].tolist() == [abs(j) > 0.01 for j in table["jacobian"]]


def test_exited_flags_read_the_column_or_say_none_exited(run):
    _, _, prompt, connections = run
    table = connections_table(connections, prompt.strings, 0.01)
    flags = exited_flags(table)
    assert flags.dtype == bool
    np.testing.assert_array_equal(flags, connections.exited.numpy())
    bare = exited_flags(table.drop(columns=["exited"]))
    assert bare.dtype == bool and bare.shape == (len(table),) and not bare.any()


def test_connections_table_matches_the_engine_row_for_row(run):
    _, _, prompt, connections = run
    table = connections_table(connections, prompt.strings, 0.01)
    assert tuple(table.columns) == COLUMNS
    assert len(table) == len(connections.diff)
    np.testing.assert_array_equal(table["position"], connections.position.numpy())
    np.testing.assert_array_equal(table["out_feature"], connections.out_feature.numpy())
    np.testing.assert_array_equal(table["diff"], connections.diff.numpy())
    # the token column is each row's own token as text
    assert list(table["token"].astype(str)) == [prompt.strings[p] for p in table["position"]]
    columns = connection_columns(connections)
    assert set(columns) == set(COLUMNS) - {"token", "important"}
    assert columns["in_feature"].dtype == np.int32 and columns["jacobian"].dtype == np.float32


@pytest.mark.parametrize("fmt", list(TABLE_FORMATS))
def test_write_table_and_table_bytes_write_the_same_table(tmp_path, fmt):
    table = pd.DataFrame({"position": [1, 2], "diff": [0.5, -0.25], "important": [True, False]})
    path = tmp_path / "sub" / f"out.{fmt}"
    write_table(table, path, table_format(path))
    data = table_bytes(table, fmt)
    if fmt == "csv":
        assert path.read_bytes() == data == table.to_csv(index=False).encode("utf-8")
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    pd.testing.assert_frame_equal(read(path), table)
    pd.testing.assert_frame_equal(read(io.BytesIO(data)), table)


def test_table_format_names_the_choices():
    assert table_format("a/b.PARQUET") == "parquet"
    with pytest.raises(InputError, match=r"--output must end in \.parquet or \.csv, got 'r\.xlsx'"):
        table_format("r.xlsx", what="--output")


def test_first_line_of_an_error():
    assert first_line(RuntimeError("boom\nat line 3\nmore")) == "boom"
    assert first_line(ValueError("  \n  ")) == "ValueError"
    assert first_line(KeyError()) == "KeyError"


def test_os_reason_is_the_systems_reason_else_the_first_line():
    err = PermissionError(13, "Permission denied", "/data/x.parquet")
    assert "/data/x.parquet" in str(err) and os_reason(err) == "Permission denied"
    assert os_reason(OSError("disk gone\ntraceback")) == "disk gone"
    assert os_reason(OSError()) == "OSError"


def test_an_empty_experiment_has_zero_connections_and_nan_elsewhere():
    empty = pd.DataFrame({"diff": [], "predicted": [], "important": np.array([], bool)})
    for row in (empty_summary(), ExperimentStats().describe(), summarize(empty).loc["all"]):
        assert list(row.keys()) == list(SUMMARY_COLUMNS)
        assert row["connections"] == 0
        assert all(np.isnan(row[c]) for c in SUMMARY_COLUMNS if c != "connections")


def test_token_strings_decode_each_token_alone(run):
    model, _, prompt, _ = run
    ids = prompt.tokens.tolist()
    assert token_strings(model.tokenizer, ids) == [model.tokenizer.decode([t]) for t in ids]
    assert prompt.strings == token_strings(model.tokenizer, ids)
    assert "".join(token_strings(model.tokenizer, ids[1:])) == PROMPT
    assert token_strings(model.tokenizer, []) == []


def test_first_ablated_skips_bos_only_when_asked_and_present():
    assert first_ablated(torch.tensor([7, 1, 2]), bos=7, include_bos=False) == 1
    assert first_ablated(np.array([7, 1, 2]), bos=7, include_bos=True) == 0
    assert first_ablated(np.array([3, 1, 2]), bos=7, include_bos=False) == 0
    assert first_ablated(np.array([3, 1, 2]), bos=None, include_bos=False) == 0
    assert first_ablated(np.array([], dtype=int), bos=7, include_bos=False) == 0
    assert first_ablated(torch.tensor([7]), bos=7, include_bos=False) == 1, "BOS alone"


def test_tolerance_within_is_numpys_isclose_rule():
    rng = np.random.default_rng(0)
    diff, predicted = rng.normal(size=500), rng.normal(size=500)
    tol = Tolerance(atol=0.3, rtol=0.2)
    np.testing.assert_array_equal(
        tol.within(diff, predicted), np.isclose(diff, predicted, atol=0.3, rtol=0.2)
    )
    table = pd.DataFrame({"diff": diff, "predicted": predicted})
    np.testing.assert_array_equal(within_tolerance(table, tol), tol.within(diff, predicted))


def test_summary_frame_lays_out_any_summary(run):
    _, _, prompt, connections = run
    table = connections_table(connections, prompt.strings, 0.01)
    summary = summarize(table)
    rebuilt = summary_frame(*(summary.loc[e].to_dict() for e in summary.index))
    pd.testing.assert_frame_equal(rebuilt, summary)
    assert list(summary.index) == ["important", "unimportant", "all"]


def test_ablation_result_knows_what_it_was_measured_on():
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=32, k=4, k_out=5, kind="plain")
    result = ablate(model, pair, PROMPT, eps=0.02)
    assert (result.layer, result.kind, result.k_in, result.k_out) == (1, "plain", 4, 5)
    assert len(result.table) == result.n_tokens * 4 * 5
    again = result.with_eps(0.5)
    assert (again.layer, again.kind, again.k_in, again.k_out, again.eps) == (1, "plain", 4, 5, 0.5)
    assert again.table["important"].tolist() == [abs(j) > 0.5 for j in result.table["jacobian"]]
    assert result.n_tokens == len(result.prompt.tokens) - 1  # BOS left out


def test_the_boundaries_are_where_the_docs_say_with_binary_exact_values():
    """|J| exactly ε is unimportant; |diff − predicted| exactly atol + rtol·|predicted| is
    within tolerance; one ulp past either boundary flips the answer."""
    eps = 0.25  # binary-exact, as are all values below
    past = np.nextafter(eps, 1.0)
    table = pd.DataFrame({"jacobian": [eps, -eps, past, -past], "diff": 0.0, "predicted": 0.0})
    assert split(table, eps)["important"].tolist() == [False, False, True, True]
    tol = Tolerance(atol=0.125, rtol=0.5)
    predicted = np.array([0.5, -0.5, 0.5, 0.0])
    bound = 0.125 + 0.5 * np.abs(predicted)  # 0.375, 0.375, 0.375, 0.125: exact
    diff = predicted + np.array([1, -1, 1, -1]) * bound
    assert tol.within(diff, predicted).tolist() == [True, True, True, True]
    beyond = np.nextafter(diff, np.where(diff >= predicted, np.inf, -np.inf))
    assert tol.within(beyond, predicted).tolist() == [False, False, False, False]
