"""Corpus runs with ``--joint``: each shard's exact joint sums, merged over shards and resumes."""

import numpy as np
import pandas as pd
import pytest
import torch

from jsae.ablation import AblationConfig
from jsae.corpus import CorpusError, corpus_joint, read_shards, run_corpus
from jsae.corpus.engine import WindowEngine
from jsae.corpus.plan import DoneSet
from jsae.corpus.reader import open_corpus
from jsae.loading import load_source
from jsae.prompt import mlp_inputs
from tests.reference import joint_loop
from tests.test_corpus import job_for, make_corpus, make_source

DOCS = {"a.txt": "The quick brown fox jumps over the lazy dog. " * 3, "b.txt": "def f(x): x\n"}
ZERO = AblationConfig(mode="zero")


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("source") / "src")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), DOCS)


@pytest.fixture(scope="module")
def joint_run(source_dir, corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("joint") / "out"
    run_corpus(job_for(source_dir, corpus_dir, out, joint=True, ablation=ZERO))
    return out


def test_the_merged_sets_are_what_a_loop_measures_on_every_window(
    joint_run, source_dir, corpus_dir
):
    """Sets built from the shards' own |J| column, removed one at a time through
    TransformerLens's MLP and sae-lens's encode on every window the run planned."""
    stats = corpus_joint(joint_run)
    rows = read_shards(joint_run)
    source = load_source(source_dir)
    pair = source.pair(1, "jsae")
    job = job_for(source_dir, corpus_dir, joint_run, joint=True, ablation=ZERO)
    engine = WindowEngine(job)
    windows = [
        w
        for unit in engine.plan(open_corpus(corpus_dir), DoneSet([]), first_shard=0)
        for w in unit.windows
    ]
    assert stats.n_tokens == rows.groupby(["document", "window", "position"]).ngroups
    for name, keep in (("unimportant", rows["jacobian"].abs() <= 0.05), ("important", None)):
        keep = keep if keep is not None else rows["jacobian"].abs() > 0.05
        diffs = []
        for w in windows:
            here = rows[keep & (rows["document"] == w.document) & (rows["window"] == w.index)]
            x = mlp_inputs(source.model, torch.from_numpy(w.tokens), 1)
            removed = {
                (int(p), int(j)): g["in_feature"].tolist()
                for (p, j), g in here.groupby(["position", "out_feature"])
            }
            diffs += list(joint_loop(source.model, pair, x, removed, "zero").values())
        row = stats.of_set(name)
        assert row["pairs"] == len(diffs)
        assert row["mean_abs_diff"] == pytest.approx(np.mean(np.abs(diffs)), abs=1e-5)


def test_shardings_and_resumes_merge_to_bitwise_equal_sums(
    joint_run, source_dir, corpus_dir, tmp_path
):
    one = tmp_path / "one"
    run_corpus(job_for(source_dir, corpus_dir, one, joint=True, ablation=ZERO, shard_tokens=10_000))
    resumed = tmp_path / "resumed"
    job = job_for(source_dir, corpus_dir, resumed, joint=True, ablation=ZERO, shard_tokens=20)
    run_corpus(job, max_windows=1)
    run_corpus(job)
    want = corpus_joint(joint_run)
    for out in (one, resumed):
        got = corpus_joint(out)
        pd.testing.assert_frame_equal(got.sets, want.sets, check_exact=True)
        pd.testing.assert_frame_equal(got.curves, want.curves, check_exact=True)
        assert got.area == want.area and np.isnan(got.score_ci).all()


def test_a_run_without_joint_has_none_and_does_not_resume_as_joint(
    source_dir, corpus_dir, tmp_path
):
    out = tmp_path / "plain"
    run_corpus(job_for(source_dir, corpus_dir, out), max_windows=1)
    assert corpus_joint(out) is None
    with pytest.raises(CorpusError, match="another configuration"):
        run_corpus(job_for(source_dir, corpus_dir, out, joint=True))
