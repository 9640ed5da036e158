"""Corpus runs: windows, shards, resume, and statistics that merge across shards."""

import hashlib
import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jsae.ablation import AblationConfig, ablate
from jsae.corpus import (
    ABS_EDGES,
    DIFF_EDGES,
    MANIFEST,
    MANIFEST_FORMAT,
    SHARD_COLUMNS,
    SHARD_SCHEMA,
    CorpusError,
    CorpusJob,
    CorpusStats,
    DoneSet,
    ExperimentStats,
    RayError,
    ShardEntry,
    corpus_stats,
    document_windows,
    open_corpus,
    read_manifest,
    read_shards,
    run_corpus,
)
from jsae.corpus.mergeable import abs_bin, exact_sum, exact_value
from jsae.errors import InputError
from jsae.loading import load_source, save_source
from jsae.stats import Tolerance, importance_ratio, summarize
from jsae.table import COLUMNS, split
from tests.helpers import TEXT, tiny_model, tiny_pair

KEYS = ["document", "window", "position", "in_feature", "out_feature"]
EXACT = ("connections", "mean_diff", "mean_abs_diff", "within_tolerance")
DOCS = {
    "a.txt": TEXT * 3,
    "b.txt": "",  # an empty document has no windows
    "c.txt": "Alice: hi!\nBob: hello, Alice.\n",  # fits one window
    "sub/d.txt": TEXT + "The lazy dog sleeps.\n" * 4,
    "e.txt": "def f(x):\n    return x + 1\n" * 5,
}


def make_source(path):
    model = tiny_model()
    return save_source(path, model, {"jsae": {1: tiny_pair(model, 1)}})


def make_corpus(path, docs=DOCS):
    for name, text in docs.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("source") / "src")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def job_for(source_dir, corpus_dir, output, **kwargs):
    defaults = {"window_tokens": 24, "shard_tokens": 60, "eps": 0.05}
    return CorpusJob(
        dataset=corpus_dir, output=output, source=str(source_dir), **(defaults | kwargs)
    )


def sorted_rows(table: pd.DataFrame) -> pd.DataFrame:
    out = table.astype({"document": str, "token": str})
    return out.sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def full_run(source_dir, corpus_dir, tmp_path_factory):
    """One uninterrupted run: the reference for sharded, resumed and Ray runs."""
    out = tmp_path_factory.mktemp("full") / "out"
    run = run_corpus(job_for(source_dir, corpus_dir, out))
    return run, sorted_rows(read_shards(out))


# --------------------------------------------------------------------------------------
# Windows


def test_windows_cut_the_token_stream_into_bos_prefixed_pieces(source_dir):
    tok = load_source(source_dir).tokenizer
    text = TEXT * 2
    stream = tok(text, add_special_tokens=False)["input_ids"]
    windows = list(
        document_windows(
            iter([text]), lambda t: tok(t, add_special_tokens=False)["input_ids"], 10, 0
        )
    )
    assert all(w[0] == 0 and len(w) <= 10 for w, _ in windows)
    assert [final for _, final in windows] == [False] * (len(windows) - 1) + [True]
    assert np.concatenate([w[1:] for w, _ in windows]).tolist() == stream
    assert len(windows) == math.ceil(len(stream) / 9)
    # blocks split anywhere give the same windows as long as tokenization agrees
    blocks = [stream[:5], stream[5:23], stream[23:]]
    again = list(document_windows(iter(range(3)), lambda i: blocks[i], 10, 0))
    assert [w.tolist() for w, _ in again] == [w.tolist() for w, _ in windows]
    assert list(document_windows(iter([""]), lambda t: [], 10, 0)) == []


def test_done_set_is_the_union_of_shard_ranges():
    shards = [
        {"start": [0, "a", 0], "end": [2, "c", 1], "final": False},
        {"start": [2, "c", 2], "end": [2, "c", 4], "final": True},
        {"start": [5, "f", 3], "end": [6, "g", 0], "final": False},
    ]
    filler = {"rows": 0, "tokens": 0, "windows": 0, "sha256": "0" * 64}
    done = DoneSet(
        [
            ShardEntry.from_json(filler | s | {"shard": i, "file": f"shard-{i:05d}.parquet"})
            for i, s in enumerate(shards)
        ]
    )
    assert done.window_done(0, 0) and done.window_done(1, 99) and done.window_done(2, 4)
    assert not done.window_done(2, 5) and not done.window_done(3, 0)
    assert not done.window_done(5, 2) and done.window_done(5, 3) and done.window_done(6, 0)
    assert done.document_done(0) and done.document_done(1)
    assert done.document_done(2)  # final flag on (2, 4)
    assert not done.document_done(5) and not done.document_done(6) and not done.document_done(7)
    assert not DoneSet([]).window_done(0, 0)


def test_single_window_documents_match_prompt_ablation(full_run, source_dir):
    _, rows = full_run
    source = load_source(source_dir)
    expected = ablate(source.model, source.pair(1), DOCS["c.txt"], eps=0.05).table
    got = rows[rows["document"] == "c.txt"].drop(columns=["document", "window"])
    cols = ["position", "in_feature", "out_feature"]
    expected = expected.astype({"token": str}).sort_values(cols).reset_index(drop=True)
    got = got.sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected[got.columns], check_dtype=False)


def test_windows_follow_each_documents_tokens(full_run, source_dir, corpus_dir):
    run, rows = full_run
    tok = load_source(source_dir).tokenizer
    assert set(rows["document"]) == {"a.txt", "c.txt", "sub/d.txt", "e.txt"}  # b.txt is empty
    pair = load_source(source_dir).pair(1)
    for doc, text in DOCS.items():
        stream = tok(text, add_special_tokens=False)["input_ids"]
        mine = rows[rows["document"] == doc]
        assert mine["window"].nunique() == math.ceil(len(stream) / 23)
        assert len(mine) == len(stream) * pair.k_in * pair.k_out
        for w, group in mine.groupby("window"):
            positions = np.unique(group["position"])
            tokens = group.drop_duplicates("position").sort_values("position")["token"]
            assert positions.tolist() == list(range(1, len(positions) + 1))
            expected = [tok.decode([t]) for t in stream[23 * w : 23 * w + 23]]
            assert tokens.tolist() == expected
    assert run.tokens == sum(
        len(tok(t, add_special_tokens=False)["input_ids"]) for t in DOCS.values()
    )
    assert run.finished and run.shards == len(read_manifest(run.output).shards)


# --------------------------------------------------------------------------------------
# Statistics


def test_corpus_stats_match_summarize_at_any_eps(full_run):
    run, rows = full_run
    for eps, tol in ((0.05, None), (0.2, Tolerance(atol=0.05, rtol=0.0)), (1e-4, None)):
        stats = corpus_stats(run.output, eps, tol).summary()
        expected = summarize(split(rows, eps), tol)
        for column in EXACT:
            np.testing.assert_allclose(
                stats[column].to_numpy(float), expected[column].to_numpy(float), rtol=1e-12
            )
        for column in ("median_abs_diff", "p99_abs_diff"):
            np.testing.assert_allclose(
                stats[column].to_numpy(float), expected[column].to_numpy(float), rtol=0.024
            )
        assert importance_ratio(stats) == pytest.approx(importance_ratio(expected), rel=1e-12)


def test_corpus_decomposition_is_exact_against_the_rows(full_run):
    """P(exit), exit mass share, mean |diff| without exits, on-the-line by mass and the ratio
    without exits, merged over shards, equal the same numbers computed on all rows at once."""
    run, rows = full_run
    assert rows["exited"].any() and not rows["exited"].all()
    eps, tol = 0.05, Tolerance()
    stats = corpus_stats(run.output, eps, tol)
    table = split(rows, eps)
    absdiff = table["diff"].abs().to_numpy(np.float64)
    within = tol.within(table["diff"], table["predicted"])
    for name, mask in (("important", table["important"]), ("unimportant", ~table["important"])):
        mask = mask.to_numpy(bool)
        exited = table["exited"].to_numpy(bool) & mask
        got = stats.decomposition().loc[name]
        assert got["p_exit"] == pytest.approx(exited.sum() / mask.sum(), rel=1e-12)
        assert got["exit_mass_share"] == pytest.approx(
            absdiff[exited].sum() / absdiff[mask].sum(), rel=1e-9
        )
        stays = mask & ~exited
        assert got["mean_abs_diff_without_exits"] == pytest.approx(absdiff[stays].mean(), rel=1e-9)
        assert got["on_line_mass_share"] == pytest.approx(
            absdiff[mask & within].sum() / absdiff[mask].sum(), rel=1e-9
        )
    imp = table["important"].to_numpy(bool) & ~table["exited"].to_numpy(bool)
    unimp = ~table["important"].to_numpy(bool) & ~table["exited"].to_numpy(bool)
    assert stats.ratio_without_exits() == pytest.approx(
        absdiff[imp].mean() / absdiff[unimp].mean(), rel=1e-9
    )
    again = CorpusStats.from_dict(stats.to_dict())
    pd.testing.assert_frame_equal(again.decomposition(), stats.decomposition())


def test_exact_sums_are_exact_whatever_the_values():
    """exact_sum counts 2**-SUM_SHIFT units exactly: its value is math.fsum's correctly rounded
    total, bit for bit, for signs, subnormals, huge and cancelling values alike."""
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            rng.normal(0, 1, 5000),
            rng.lognormal(0, 30, 200) * rng.choice([-1, 1], 200),  # 1e-40 … 1e40
            [5e-324, -5e-324, 2.2e-308, 1e300, -1e300, 0.0, -0.0, 1.0, 1e-16, -1.0],
        ]
    )
    total = exact_sum(values)
    assert exact_value(total) == math.fsum(values.tolist())
    # any split, in any order, adds to the same integer
    cuts = np.sort(rng.choice(np.arange(1, len(values)), 11, replace=False))
    assert sum(exact_sum(part) for part in reversed(np.split(values, cuts))) == total
    assert exact_sum(np.array([0.1, 0.2, -0.3])) == exact_sum(np.array([-0.3, 0.2, 0.1]))
    assert exact_value(exact_sum(np.array([1e16, 1.0, -1e16]))) == 1.0  # naive float sum: 0


def test_two_shardings_give_bitwise_equal_statistics():
    rng = np.random.default_rng(3)
    n = 30_000
    diff = (rng.lognormal(-3, 3, n) * rng.choice([-1, 1], n)).astype(np.float32)
    jac = rng.normal(0, 0.1, n).astype(np.float32)
    exited = rng.random(n) < 0.05
    stats = []
    for seed in (1, 2):
        cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, n), 9, replace=False))
        merged = CorpusStats(0.05)
        for j, d, e in zip(*(np.split(a, cuts) for a in (jac, diff, exited)), strict=True):
            merged = merged.merge(CorpusStats.of(j, -j, d, 0.05, exited=e))
        stats.append(merged)
    a, b = stats
    pd.testing.assert_frame_equal(a.summary(), b.summary(), check_exact=True)
    pd.testing.assert_frame_equal(a.decomposition(), b.decomposition(), check_exact=True)
    important = np.abs(jac) > 0.05
    exact = sum(Fraction(float(x)) for x in np.abs(diff[important])) / int(important.sum())
    assert a.summary().loc["important", "mean_abs_diff"] == float(exact)  # correctly rounded


def test_merged_accumulators_equal_one_accumulator():
    rng = np.random.default_rng(0)
    n = 20_000
    diff = (rng.lognormal(-3, 2, n) * rng.choice([-1, 1], n)).astype(np.float32)
    diff[:50] = 0.0
    jac = rng.normal(0, 0.1, n).astype(np.float32)
    predicted = (-jac).astype(np.float32)
    whole = CorpusStats.of(jac, predicted, diff, 0.05)
    cuts = np.sort(rng.choice(np.arange(1, n), 7, replace=False))
    parts = [
        CorpusStats.of(j, p, d, 0.05)
        for j, p, d in zip(*(np.split(a, cuts) for a in (jac, predicted, diff)), strict=True)
    ]
    merged = CorpusStats(0.05)
    for part in reversed(parts):
        merged = merged.merge(part)
    for a, b in ((whole.important, merged.important), (whole.unimportant, merged.unimportant)):
        assert a.count == b.count and a.within == b.within
        assert (a.hist_abs == b.hist_abs).all() and (a.hist_diff == b.hist_diff).all()
        assert a.hist_abs.sum() == a.count == a.hist_diff.sum()
        # exact: the sums are equal integers, and the correctly rounded total of all rows
        assert a.sum_diff == b.sum_diff and a.sum_abs_diff == b.sum_abs_diff
        assert a.describe() == b.describe()
    s = merged.summary()
    important = np.abs(jac) > 0.05
    d = diff.astype(np.float64)
    assert s.loc["important", "mean_diff"] == pytest.approx(d[important].mean(), rel=1e-12)
    assert s.loc["all", "mean_abs_diff"] == pytest.approx(np.abs(d).mean(), rel=1e-12)
    for q, col in ((0.5, "median_abs_diff"), (0.99, "p99_abs_diff")):
        exact = np.quantile(np.abs(d[~important]), q)
        assert s.loc["unimportant", col] == pytest.approx(exact, rel=0.024)
    again = CorpusStats.from_dict(json.loads(json.dumps(merged.to_dict())))
    pd.testing.assert_frame_equal(again.summary(), s)
    with pytest.raises(ValueError):
        merged.merge(CorpusStats(0.1))


def test_histogram_bins_hold_their_values():
    values = np.array([0.0, 5e-10, 1e-9, 0.0123, 0.5, 1.0, 7.5, 2e6, -0.3])
    stats = ExperimentStats.of(values, np.zeros(len(values), bool))
    for v in np.abs(values):
        b = np.searchsorted(ABS_EDGES, v, side="right") - 1
        assert stats.hist_abs[b] >= 1, v
    assert stats.hist_abs.sum() == len(values) and stats.hist_diff.sum() == len(values)
    assert stats.abs_quantile(1.0) == pytest.approx(1e6)  # the overflow bin reads its floor
    assert math.isnan(ExperimentStats().abs_quantile(0.5))


def test_negative_and_positive_diffs_land_in_their_bins_of_the_diff_histogram():
    """``hist_diff`` against ``np.histogram`` on the same ``DIFF_EDGES``, per experiment.

    Strictly inside a bin (the geometric middle of a log bin, or well inside the end bins)
    both must agree exactly. Exactly on an edge the grid is mirrored: |diff| = e goes to the
    |diff| bin [e, next), so e >= 0 counts in the diff bin [e, next) as in ``np.histogram``,
    but -e counts in (-next, -e], the bin *below* the one ``np.histogram`` (left-closed)
    picks; ±0 both count in [0, 1e-9). Only edges that are exact powers of ten are used: the
    other log edges are not exactly 10^(n/100) in float64."""
    n_abs = len(ABS_EDGES) - 1
    inner_abs = np.sqrt(ABS_EDGES[1:-2] * ABS_EDGES[2:-1])  # middles of the log bins
    inner_abs = np.concatenate([[5e-10], inner_abs, [3e6, 1e300]])
    rng = np.random.default_rng(1)
    picked = rng.choice(inner_abs, 3000)  # some bins twice, some not at all
    inside = np.concatenate([picked, -picked[:1700], -inner_abs[[0, 1, -1, -2]]])
    edges = np.array([1e-9, 1e-2, 1.0, 10.0, 1e6])
    assert np.isin(edges, DIFF_EDGES).all() and np.isin(-edges, DIFF_EDGES).all()
    on_edge = np.concatenate([edges, -edges, [0.0, -0.0]])
    diff = np.concatenate([inside, on_edge])
    jac = rng.choice([-0.5, -0.01, 0.02, 0.3], len(diff))  # both experiments, eps 0.05
    stats = CorpusStats.of(jac, -jac, diff, 0.05)
    important = np.abs(jac) > 0.05
    for got, rows in ((stats.important, important), (stats.unimportant, ~important)):
        want, _ = np.histogram(diff[rows & np.isin(diff, inside)], DIFF_EDGES)
        # the edge values, by the mirrored convention
        for v in diff[rows & np.isin(diff, on_edge)]:
            b = int(np.searchsorted(DIFF_EDGES, v, side="right")) - 1  # np.histogram's bin
            want[b - 1 if v < 0 else b] += 1
        np.testing.assert_array_equal(got.hist_diff, want)
        assert got.hist_diff[:n_abs].sum() == (diff[rows] < 0).sum()  # negatives below 0
    # spot checks by hand: -1.0 in (-1.0233, -1.0], +1.0 in [1.0, 1.0233), ±0 in [0, 1e-9)
    one = CorpusStats.of(np.ones(4), -np.ones(4), np.array([-1.0, 1.0, 0.0, -0.0]), 0.05)
    (bins,) = np.nonzero(one.important.hist_diff)
    assert DIFF_EDGES[bins[0]] == pytest.approx(-1.0233, rel=1e-4)
    assert DIFF_EDGES[bins[0] + 1] == -1.0
    assert list(DIFF_EDGES[bins[1] : bins[1] + 2]) == [0.0, 1e-9]
    assert one.important.hist_diff[bins[1]] == 2
    assert DIFF_EDGES[bins[2]] == 1.0


# --------------------------------------------------------------------------------------
# Resume


class Stop(Exception):
    pass


def test_interrupted_run_resumes_without_duplicates(full_run, source_dir, corpus_dir, tmp_path):
    _, expected = full_run
    out = tmp_path / "out"
    job = job_for(source_dir, corpus_dir, out)
    calls = []

    def crash(done, total):
        calls.append(done)
        if len(calls) == 7:  # mid-shard: the shard in flight must leave no trace
            raise Stop

    with pytest.raises(Stop):
        run_corpus(job, progress=crash)
    manifest = read_manifest(out)
    assert len(manifest.shards) > 0 and sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST] + [s.file for s in manifest.shards]
    )
    partial = read_shards(out)
    assert manifest.rows == len(partial) < len(expected)

    second = run_corpus(job, max_windows=3)  # stops again, cleanly
    assert not second.finished and second.windows == 3
    third = run_corpus(job)
    assert third.finished
    rows = sorted_rows(read_shards(out))
    pd.testing.assert_frame_equal(rows, expected)
    assert not rows.duplicated(KEYS).any()
    assert read_manifest(out).tokens == full_run[0].tokens
    assert run_corpus(job).tokens == 0  # nothing left


def test_files_written_after_the_last_manifest_update_are_dropped(
    full_run, source_dir, corpus_dir, tmp_path
):
    _, expected = full_run
    out = tmp_path / "out"
    job = job_for(source_dir, corpus_dir, out)
    run_corpus(job, max_windows=4)
    manifest = read_manifest(out)
    last = out / manifest.shards[-1].file
    # a crash between renaming a shard and updating the manifest, and one mid-write
    (out / "shard-00042.parquet").write_bytes(last.read_bytes())
    (out / "shard-00043.parquet.tmp").write_bytes(b"partial")
    run_corpus(job)
    assert not (out / "shard-00043.parquet.tmp").exists()
    pd.testing.assert_frame_equal(sorted_rows(read_shards(out)), expected)


def test_max_tokens_stops_at_a_window_and_a_rerun_extends(
    full_run, source_dir, corpus_dir, tmp_path
):
    run_all, expected = full_run
    out = tmp_path / "out"
    first = run_corpus(job_for(source_dir, corpus_dir, out, max_tokens=50))
    assert first.finished and 50 <= first.tokens < 50 + 23
    more = run_corpus(job_for(source_dir, corpus_dir, out, max_tokens=10_000))
    assert first.tokens + more.tokens == run_all.tokens
    pd.testing.assert_frame_equal(sorted_rows(read_shards(out)), expected)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"eps": 0.1}, "eps: 0.05 there, 0.1 now"),
        ({"window_tokens": 16}, "window_tokens"),
        ({"ablation": AblationConfig(mode="zero")}, "mode: 'unit' there, 'zero' now"),
    ],
)
def test_resume_refuses_another_configuration(source_dir, corpus_dir, tmp_path, change, message):
    out = tmp_path / "out"
    run_corpus(job_for(source_dir, corpus_dir, out), max_windows=1)
    with pytest.raises(CorpusError, match="another configuration") as err:
        run_corpus(job_for(source_dir, corpus_dir, out, **change))
    assert message in str(err.value)


def test_resume_refuses_a_changed_corpus(source_dir, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", {"a.txt": TEXT})
    out = tmp_path / "out"
    run_corpus(job_for(source_dir, corpus, out), max_windows=1)
    (corpus / "b.txt").write_text("more")
    with pytest.raises(CorpusError, match="dataset_fingerprint"):
        run_corpus(job_for(source_dir, corpus, out))


def test_refuses_a_folder_that_is_not_a_corpus_run(source_dir, corpus_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(CorpusError, match="not empty"):
        run_corpus(job_for(source_dir, corpus_dir, out))
    with pytest.raises(CorpusError, match="no manifest.json"):
        corpus_stats(out)


def test_manifest_entries_describe_their_shards(full_run):
    run, rows = full_run
    raw = json.loads((run.output / MANIFEST).read_text())
    assert raw["format"] == MANIFEST_FORMAT and list(raw) == ["format", "config", "info", "shards"]
    assert [s.to_json() for s in read_manifest(run.output).shards] == raw["shards"]
    last_window = rows.groupby("document")["window"].max()
    for entry in raw["shards"]:
        assert list(entry) == [
            *("shard", "file", "rows", "tokens", "windows", "start", "end", "final", "sha256")
        ]
        assert (
            entry["sha256"] == hashlib.sha256((run.output / entry["file"]).read_bytes()).hexdigest()
        )
        shard = pd.read_parquet(run.output / entry["file"]).astype({"document": str})
        windows = shard[["document", "window"]].drop_duplicates()  # in corpus order
        first, last = windows.iloc[0], windows.iloc[-1]
        assert entry["rows"] == len(shard) and entry["windows"] == len(windows)
        assert entry["tokens"] == len(shard.drop_duplicates(["document", "window", "position"]))
        assert entry["start"] == [sorted(DOCS).index(first.document), *first]
        assert entry["end"] == [sorted(DOCS).index(last.document), *last]
        assert entry["final"] == (last.window == last_window[last.document])


def test_shards_are_the_prompt_tables_columns_typed_for_arrow(full_run):
    run, _ = full_run
    expected = {
        "document": pa.dictionary(pa.int32(), pa.string()),
        "window": pa.int32(),
        "position": pa.int32(),
        "token": pa.dictionary(pa.int32(), pa.string()),
        "in_feature": pa.int32(),
        "out_feature": pa.int32(),
        **dict.fromkeys(["in_act", "out_act", "jacobian", "predicted", "diff"], pa.float32()),
        **dict.fromkeys(["pre_diff", "curvature", "gate"], pa.float32()),
        "exited": pa.bool_(),
        "entered": pa.int32(),
        "margin": pa.float32(),
        "important": pa.bool_(),
    }
    assert pa.schema(list(expected.items())) == SHARD_SCHEMA
    assert ("document", "window", *COLUMNS) == SHARD_COLUMNS
    for path in sorted(run.output.glob("shard-*.parquet")):
        assert pq.read_schema(path).remove_metadata() == SHARD_SCHEMA


def test_a_manifest_written_before_reads_into_named_fields(tmp_path):
    entry = {"shard": 3, "file": "shard-00003.parquet", "rows": 12, "tokens": 3, "windows": 1}
    entry |= {"start": [2, "c.txt", 0], "end": [4, "sub/d.txt", 1], "final": True}
    entry |= {"sha256": "ab" * 32}
    data = {
        "format": MANIFEST_FORMAT,
        "config": {"eps": 0.05},
        "info": {"source": "demo"},
        "shards": [entry],
    }
    (tmp_path / MANIFEST).write_text(json.dumps(data, indent=1))
    manifest = read_manifest(tmp_path)
    shard = manifest.shards[0]
    assert (shard.shard, shard.file, shard.rows, shard.tokens, shard.windows) == (
        3,
        "shard-00003.parquet",
        12,
        3,
        1,
    )
    assert (shard.start.ordinal, shard.start.document, shard.start.index) == (2, "c.txt", 0)
    assert (shard.end.ordinal, shard.end.document, shard.end.index, shard.final) == (
        4,
        "sub/d.txt",
        1,
        True,
    )
    assert (manifest.tokens, manifest.rows, manifest.windows, manifest.next_shard()) == (
        3,
        12,
        1,
        4,
    )
    manifest.save()
    assert json.loads((tmp_path / MANIFEST).read_text()) == data
    entry["start"] = [2, "c.txt"]
    (tmp_path / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(CorpusError, match="is corrupt"):
        read_manifest(tmp_path)
    # 1: shards without the decomposition columns; 2: entries without a content hash
    for other in (1, 2, MANIFEST_FORMAT + 1):
        (tmp_path / MANIFEST).write_text(json.dumps(data | {"format": other}))
        with pytest.raises(CorpusError, match=f"has format {other}; this jsae reads 3 .*new"):
            read_manifest(tmp_path)


# --------------------------------------------------------------------------------------
# Corpus formats and bad input


def test_hf_dataset_on_disk_gives_the_same_rows(full_run, source_dir, tmp_path):
    datasets = pytest.importorskip("datasets")
    _, expected = full_run
    names = sorted(DOCS)  # the text folder's document order
    ds = datasets.Dataset.from_dict({"id": names, "body": [DOCS[n] for n in names]})
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(tmp_path / "hf")
    out = tmp_path / "out"
    run_corpus(job_for(source_dir, tmp_path / "hf", out, text_column="body"))
    rows = read_shards(out).astype({"document": str, "token": str})
    rows["document"] = [names[int(i)] for i in rows["document"]]
    rows = rows.sort_values(KEYS).reset_index(drop=True)
    pd.testing.assert_frame_equal(rows, expected)
    with pytest.raises(InputError, match="no column 'text'"):
        run_corpus(job_for(source_dir, tmp_path / "hf", tmp_path / "o2"))
    with pytest.raises(InputError, match="no split 'dev'"):
        run_corpus(job_for(source_dir, tmp_path / "hf", tmp_path / "o3", split="dev"))


def test_single_text_file_and_missing_paths(source_dir, tmp_path):
    file = tmp_path / "one.txt"
    file.write_text(DOCS["c.txt"])
    run = run_corpus(job_for(source_dir, file, tmp_path / "out"))
    assert set(read_shards(tmp_path / "out")["document"].astype(str)) == {"one.txt"}
    assert run.tokens > 0
    with pytest.raises(CorpusError, match="does not exist"):
        open_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no .txt files"):
        open_corpus(tmp_path / "empty")
    with pytest.raises(InputError, match="window-tokens must be between 2"):
        run_corpus(job_for(source_dir, file, tmp_path / "o", window_tokens=1))
    with pytest.raises(InputError, match="--window-tokens must be a positive integer, got 0"):
        job_for(source_dir, file, tmp_path / "o", window_tokens=0)


def test_ray_engine_without_ray_says_how_to_install(source_dir, corpus_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(RayError, match=r"pip install 'jsae\[ray\]'"):
        run_corpus(job_for(source_dir, corpus_dir, tmp_path / "out"), engine="ray")
    assert not (tmp_path / "out").exists()


def test_every_abs_edge_is_in_its_own_bin():
    """A value exactly on an edge of the |diff| grid lands in [edge, next), as np.histogram
    puts it, for every edge (not only the decades)."""
    edges = ABS_EDGES[:-1]
    np.testing.assert_array_equal(abs_bin(edges), np.arange(len(edges)))
    values = np.concatenate([edges, np.nextafter(edges[1:], 0), [np.inf, 1e300]])
    expected = np.histogram(values[np.isfinite(values)], bins=ABS_EDGES)[0]
    got = np.bincount(abs_bin(values[np.isfinite(values)]), minlength=len(ABS_EDGES) - 1)
    np.testing.assert_array_equal(got, expected)
    assert abs_bin(np.array([np.inf]))[0] == len(ABS_EDGES) - 2
