"""A corpus run with a pair sampler (``jsae ablate --dataset --pairs``): each shard keeps the
connections the sampler chooses per token. The reference is the unsampled run's whole table
read back (``read_shards``) and sampled in one go by ``sample_pairs``: the shards must hold
exactly those rows, with the same numbers, however the run is cut into shards; and every
token keeps min(n_in, n_out) of its connections, counted here with pandas."""

import json

import numpy as np
import pandas as pd
import pytest

from jsae.cli import main
from jsae.corpus import CorpusError, read_shards, run_corpus
from jsae.sampler import PairSampler, sample_pairs
from tests.test_corpus import (
    KEYS,
    corpus_dir,  # noqa: F401  (a fixture)
    full_run,  # noqa: F401  (a fixture)
    job_for,
    make_corpus,
    sorted_rows,
    source_dir,  # noqa: F401  (a fixture)
)

TOKEN = ["document", "window", "position"]


def sampled_run(source_dir, corpus_dir, out, sampler, **kwargs):  # noqa: F811
    run_corpus(job_for(source_dir, corpus_dir, out, sampler=sampler, **kwargs))
    return sorted_rows(read_shards(out))


@pytest.mark.parametrize("sampler", [PairSampler("random", 3), PairSampler("equal_rank")])
def test_shards_hold_the_whole_tables_sample(full_run, source_dir, corpus_dir, tmp_path, sampler):  # noqa: F811
    _, everything = full_run
    want = sorted_rows(sample_pairs(everything, sampler))
    for shard_tokens in (60, 10_000):  # several shards, then one
        got = sampled_run(
            source_dir, corpus_dir, tmp_path / f"{shard_tokens}", sampler, shard_tokens=shard_tokens
        )
        pd.testing.assert_frame_equal(got, want)
    sizes = everything.groupby(TOKEN, observed=True).agg(
        n_in=("in_feature", "nunique"), n_out=("out_feature", "nunique")
    )
    kept = got.groupby(TOKEN, observed=True).size()
    assert (kept == sizes.min(axis=1).loc[kept.index]).all() and len(kept) == len(sizes)


def test_a_tokens_draw_depends_on_its_place_not_on_the_rest(
    full_run,  # noqa: F811
    source_dir,  # noqa: F811
    tmp_path,
):
    """One document alone gives the same pairs as in the whole corpus."""
    _, everything = full_run
    alone = make_corpus(tmp_path / "one", {"c.txt": "Alice: hi!\nBob: hello, Alice.\n"})
    sampler = PairSampler("random", 3)
    got = sampled_run(source_dir, alone, tmp_path / "out", sampler)
    want = sample_pairs(everything[everything["document"] == "c.txt"], sampler)
    assert set(map(tuple, got[KEYS].to_numpy())) == set(map(tuple, want[KEYS].to_numpy()))
    other = sampled_run(source_dir, alone, tmp_path / "seed4", PairSampler("random", 4))
    assert set(map(tuple, other[KEYS].to_numpy())) != set(map(tuple, got[KEYS].to_numpy()))


def test_the_manifest_records_the_sampler_and_a_resume_must_match(
    source_dir,  # noqa: F811
    corpus_dir,  # noqa: F811
    tmp_path,
):
    out = tmp_path / "out"
    sampler = PairSampler("random", 3)
    run_corpus(job_for(source_dir, corpus_dir, out, sampler=sampler, max_tokens=30))
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert (config["pairs"], config["pairs_seed"]) == ("random", 3)
    assert PairSampler.of(config) == sampler
    with pytest.raises(CorpusError, match="pairs_seed: 3 there, 4 now"):
        run_corpus(job_for(source_dir, corpus_dir, out, sampler=PairSampler("random", 4)))
    with pytest.raises(CorpusError, match="pairs: 'random' there, None now"):
        run_corpus(job_for(source_dir, corpus_dir, out))


def test_the_cli_samples_a_corpus_beside_the_joint_ablation(
    full_run,  # noqa: F811
    source_dir,  # noqa: F811
    corpus_dir,  # noqa: F811
    tmp_path,
    capsys,
):
    _, everything = full_run
    argv = ["ablate", "--dataset", str(corpus_dir), "--source", str(source_dir), "--no-progress"]
    argv += ["--window-tokens", "24", "--shard-tokens", "60", "--eps", "0.05", "--joint"]
    assert main([*argv, "--output", str(tmp_path / "all")]) == 0
    full = capsys.readouterr().out
    out = tmp_path / "random"
    assert main([*argv, "--output", str(out), "--pairs", "random", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "connections kept: k random pairs (seeded), seed 3; removed together: every input" in (
        printed
    )
    joint = full[full.index("removed together, at the run's") :]
    assert printed[printed.index("removed together, at the run's") :] == joint
    want = sorted_rows(sample_pairs(everything, PairSampler("random", 3)))
    np.testing.assert_array_equal(sorted_rows(read_shards(out))[KEYS], want[KEYS])
    assert main(["corpus-stats", str(out)]) == 0
    assert "connections kept: k random pairs (seeded), seed 3" in capsys.readouterr().out
