"""The pair samplers against obvious per-token loops, and their rows against the research
notebook's one-connection-at-a-time loop (``tests.reference.notebook_loop``)."""

import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from jsae import explore
from jsae.ablation import ablate
from jsae.cli import main
from jsae.errors import InputError
from jsae.loading import load_source, save_source
from jsae.prompt import mlp_inputs, tokenize
from jsae.provenance import Provenance, read_provenance
from jsae.sampler import PairSampler, sample_pairs
from tests.helpers import tiny_model, tiny_pair, tiny_pairs
from tests.reference import notebook_loop

PROMPT = "The quick brown fox jumps over the lazy dog. def f(x): return x"


@pytest.fixture(scope="module")
def setting():
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=48, k=6)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)
    table = ablate(model, pair, PROMPT).table  # positions index x (BOS, 0, left out)
    return model, pair, x, table


def keys(table):
    return set(zip(table.position, table.in_feature, table.out_feature, strict=True))


def equal_rank_loop(table):
    """Per token, sort the active features by activation (strongest first, ties by id) and
    pair them up by position in the two lists."""
    kept = set()
    for position in sorted(set(table.position)):
        rows = table[table.position == position]
        ins = sorted(
            set(zip(rows.in_feature, rows.in_act, strict=True)), key=lambda f: (-f[1], f[0])
        )
        outs = sorted(
            set(zip(rows.out_feature, rows.out_act, strict=True)), key=lambda f: (-f[1], f[0])
        )
        kept |= {(position, i, j) for (i, _), (j, _) in zip(ins, outs, strict=False)}
    return kept


def test_all_keeps_every_connection(setting):
    *_, table = setting
    assert sample_pairs(table, PairSampler()) is table


def test_equal_rank_pairs_equal_the_loop_and_the_notebooks_numbers(setting):
    model, pair, x, table = setting
    got = sample_pairs(table, PairSampler("equal_rank"))
    assert keys(got) == equal_rank_loop(table)
    assert len(got) == 6 * len(set(table.position))  # k pairs per token
    assert list(got.index) == sorted(got.index)  # the table's order
    reference = notebook_loop(model, pair, x)
    for row in got.itertuples():
        want = reference[(row.position, row.in_feature, row.out_feature)]
        assert row.diff == pytest.approx(want["diff"], abs=1e-5)


def test_random_pairs_are_k_distinct_seeded_and_uniform(setting):
    *_, table = setting
    first = sample_pairs(table, PairSampler("random", seed=3))
    assert keys(first) <= keys(table)
    assert Counter(first.position) == dict.fromkeys(set(table.position), 6)
    assert keys(sample_pairs(table, PairSampler("random", seed=3))) == keys(first)
    assert keys(sample_pairs(table, PairSampler("random", seed=4))) != keys(first)
    # a token's draw does not depend on the other tokens
    alone = table[table.position == table.position.iloc[0]]
    sampled_alone = sample_pairs(alone, PairSampler("random", seed=3))
    assert keys(sampled_alone) == {k for k in keys(first) if k[0] == alone.position.iloc[0]}
    # every connection of a token is drawn with probability k / (k·k) = 1/6
    counts = Counter()
    seeds = 600
    for seed in range(seeds):
        counts.update(keys(sample_pairs(alone, PairSampler("random", seed=seed))))
    n = len(alone)
    expected = seeds * 6 / n
    chi2 = sum((counts[k] - expected) ** 2 / expected for k in keys(alone))
    assert chi2 < n + 4 * math.sqrt(2 * n)  # χ² with n − 1 degrees of freedom, far tail


def test_batches_sample_per_prompt_and_position(setting):
    *_, table = setting
    two = pd.concat([table.assign(prompt=0), table.assign(prompt=1)], ignore_index=True)
    got = sample_pairs(two, PairSampler("equal_rank"))
    assert len(got) == 2 * len(sample_pairs(table, PairSampler("equal_rank")))


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"how": "some"}, "one of all, equal_rank, random; got 'some'"),
        ({"how": "random", "seed": -1}, "whole number ≥ 0, got -1"),
        ({"how": "random", "seed": 1.5}, "whole number ≥ 0, got 1.5"),
        ({"how": "random", "seed": True}, "whole number ≥ 0, got True"),
    ],
)
def test_bad_samplers_are_refused(kwargs, said):
    with pytest.raises(InputError, match=said.replace("(", r"\(")):
        PairSampler(**kwargs)


def test_the_sampled_rows_keep_their_numbers(setting):
    *_, table = setting
    got = sample_pairs(table, PairSampler("random", seed=1))
    np.testing.assert_array_equal(got.to_numpy(), table.loc[got.index].to_numpy())


def test_equal_rank_with_unequal_counts_and_ties():
    """A hand-made token: 3 inputs, 2 outputs, two inputs tied (the lower id ranks first)."""
    ins = {7: 0.5, 3: 0.9, 5: 0.5}  # ranks: 3, 5, 7
    outs = {4: 0.1, 9: 0.8}  # ranks: 9, 4
    rows = [
        {"position": 2, "in_feature": i, "in_act": a, "out_feature": j, "out_act": b}
        for i, a in ins.items()
        for j, b in outs.items()
    ]
    table = pd.DataFrame(rows)
    got = sample_pairs(table, PairSampler("equal_rank"))
    assert keys(got) == {(2, 3, 9), (2, 5, 4)} == equal_rank_loop(table)
    assert len(sample_pairs(table, PairSampler("random", seed=0))) == 2


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    model = tiny_model()
    return save_source(tmp_path_factory.mktemp("src") / "src", model, tiny_pairs(model))


def cli_table(source_dir, out, *extra):
    args = ["ablate", "--source", str(source_dir), "--prompt", PROMPT, "--no-progress"]
    assert main([*args, "--output", str(out), *extra]) == 0
    return pd.read_parquet(out)


def test_the_cli_keeps_the_sampled_connections(source_dir, tmp_path, capsys):
    everything = cli_table(source_dir, tmp_path / "all.parquet")
    ranked = cli_table(source_dir, tmp_path / "ranked.parquet", "--pairs", "equal_rank")
    assert "connections kept: k equal-rank pairs" in capsys.readouterr().out
    assert keys(ranked) == equal_rank_loop(everything)
    seeded = cli_table(source_dir, tmp_path / "r.parquet", "--pairs", "random", "--seed", "5")
    want = sample_pairs(everything, PairSampler("random", seed=5))
    assert keys(seeded) == keys(want)
    merged = seeded.merge(everything, on=["position", "in_feature", "out_feature"])
    np.testing.assert_allclose(merged["diff_x"], merged["diff_y"], atol=1e-6)


def joint_block(out: str) -> str:
    """The printed joint ablation: from its heading to the downstream KL's."""
    start = out.index("removed together (every active output feature")
    return out[start : out.index("next-token KL", start)]


def test_the_joint_ablation_beside_a_sample_uses_every_input(source_dir, tmp_path, capsys):
    """With --joint the single-connection table is sampled, the joint pass is not: its
    numbers are those of the run that keeps every connection."""
    args = ["--joint", "--bootstrap", "0"]
    everything = cli_table(source_dir, tmp_path / "all.parquet", *args)
    full = joint_block(capsys.readouterr().out)
    seeded = cli_table(source_dir, tmp_path / "r.parquet", *args, "--pairs", "random")
    out = capsys.readouterr().out
    assert "removed together: every input of every token" in out
    assert joint_block(out) == full
    assert keys(seeded) == keys(sample_pairs(everything, PairSampler("random", seed=0)))


def test_the_sampler_is_recorded_and_from_reruns_it(source_dir, tmp_path, capsys):
    first = tmp_path / "r.csv"
    seeded = cli_table_csv(source_dir, first, "--pairs", "random", "--seed", "5")
    record = read_provenance(first)
    assert (record.pairs, record.pairs_seed) == ("random", 5)
    assert PairSampler.of(record) == PairSampler("random", 5)
    again = tmp_path / "again.parquet"
    assert main(["ablate", "--from", str(first), "--no-progress", "--output", str(again)]) == 0
    assert keys(pd.read_parquet(again)) == keys(seeded)
    assert read_provenance(again).pairs_seed == 5
    ranked = tmp_path / "ranked.parquet"
    argv = ["ablate", "--from", str(first), "--pairs", "equal_rank", "--no-progress"]
    assert main([*argv, "--output", str(ranked)]) == 0
    record = read_provenance(ranked)  # a flag beside --from wins; equal-rank has no seed
    assert (record.pairs, record.pairs_seed) == ("equal_rank", None)
    everything = tmp_path / "all.parquet"
    argv = ["ablate", "--from", str(first), "--pairs", "all", "--no-progress"]
    assert main([*argv, "--output", str(everything)]) == 0
    record = read_provenance(everything)
    assert (record.pairs, record.pairs_seed) == ("all", None)


def cli_table_csv(source_dir, out, *extra):
    args = ["ablate", "--source", str(source_dir), "--prompt", PROMPT, "--no-progress"]
    assert main([*args, "--output", str(out), *extra]) == 0
    return pd.read_csv(out)


def test_the_apps_run_records_its_sampler(source_dir):
    """What the app's downloads write: ``RunData.provenance`` of a sampled run."""
    source = load_source(source_dir)
    key = explore.RunKey(str(source_dir), None, 0, "jsae", "unit", 1.0, PROMPT, "random", 9)
    data = explore.run_ablation(source, key)
    record = data.provenance(0.02)
    assert (record.pairs, record.pairs_seed, record.eps) == ("random", 9, 0.02)
    written = Provenance.from_json(record.to_json(), "download")
    assert PairSampler.of(written) == key.sampler
    everything = explore.run_ablation(source, replace(key, pairs="all"))
    assert keys(data.table) == keys(sample_pairs(everything.table, key.sampler))
    assert everything.provenance(0.02).pairs == "all"


def test_an_old_record_without_a_sampler_reads_as_all():
    assert PairSampler.of({}) == PairSampler() == PairSampler.of({"pairs": None})
    assert PairSampler("random", 3).record() == {"pairs": "random", "pairs_seed": 3}
    assert PairSampler("equal_rank", 3).record() == {"pairs": "equal_rank", "pairs_seed": None}
