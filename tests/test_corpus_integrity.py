"""Corpus output integrity: one run per folder (two real processes), and shards checked
against the manifest's row counts and SHA-256 on every read."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from jsae.cli import main
from jsae.corpus import (
    LOCK,
    MANIFEST,
    CorpusError,
    CorpusJob,
    claim_output,
    corpus_stats,
    read_manifest,
    read_shards,
    run_corpus,
)
from jsae.loading import save_source
from tests.helpers import TEXT, tiny_model, tiny_pair

ROOT = Path(__file__).resolve().parent.parent
KEYS = ["document", "window", "position", "in_feature", "out_feature"]
SETTINGS = {"window_tokens": 24, "shard_tokens": 60, "eps": 0.05}
HOLDER = """
import pathlib, sys, time
from jsae.corpus import CorpusJob, run_corpus

source, dataset, output, ready, release = sys.argv[1:]


def progress(done, total):  # mid-shard: hold the folder until the test says so
    pathlib.Path(ready).touch()
    while not pathlib.Path(release).exists():
        time.sleep(0.05)


job = CorpusJob(dataset=dataset, output=output, source=source, window_tokens=24,
                shard_tokens=60, eps=0.05)
run_corpus(job, progress=progress)
"""


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    model = tiny_model()
    return save_source(
        tmp_path_factory.mktemp("src") / "src", model, {"jsae": {1: tiny_pair(model, 1)}}
    )


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus")
    (path / "a.txt").write_text(TEXT * 3)
    (path / "b.txt").write_text("def f(x):\n    return x + 1\n" * 5)
    return path


def job_for(source_dir, corpus_dir, output, **kwargs):
    return CorpusJob(
        dataset=corpus_dir, output=output, source=str(source_dir), **(SETTINGS | kwargs)
    )


@pytest.fixture(scope="module")
def reference(source_dir, corpus_dir, tmp_path_factory):
    """One uninterrupted run, and its rows in a fixed order."""
    out = tmp_path_factory.mktemp("ref") / "out"
    run_corpus(job_for(source_dir, corpus_dir, out))
    assert len(read_manifest(out).shards) >= 3
    return out, sorted_rows(read_shards(out))


def sorted_rows(table: pd.DataFrame) -> pd.DataFrame:
    out = table.astype({"document": str, "token": str})
    return out.sort_values(KEYS).reset_index(drop=True)


@pytest.fixture
def copy(reference, tmp_path):
    """A copy of the reference run's folder, to damage."""
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    return out


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the holder never started ablating"
        time.sleep(0.05)


def start_holder(source_dir, corpus_dir, out, tmp_path):
    ready, release = tmp_path / "ready", tmp_path / "release"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(source_dir), str(corpus_dir), str(out)]
        + [str(ready), str(release)],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(ready, proc)
    return proc, release


def cli_run(source_dir, corpus_dir, out) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jsae.cli", "ablate", "--source", str(source_dir)]
        + ["--dataset", str(corpus_dir), "--output", str(out), "--window-tokens", "24"]
        + ["--shard-tokens", "60", "--eps", "0.05", "--no-progress"],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


# --------------------------------------------------------------------------------------
# One run per output folder


def test_a_second_process_on_a_folder_in_use_fails_and_damages_nothing(
    reference, source_dir, corpus_dir, tmp_path
):
    out = tmp_path / "out"
    holder, release = start_holder(source_dir, corpus_dir, out, tmp_path)
    try:
        second = cli_run(source_dir, corpus_dir, out)
        assert second.returncode == 2, second.stderr
        assert "Traceback" not in second.stderr
        (line,) = second.stderr.strip().splitlines()
        assert line.startswith(f"error: {out} is being written by another corpus run (pid ")
        assert f"pid {holder.pid} on " in line and "use another --output folder" in line
    finally:
        release.touch()
        _, err = holder.communicate(timeout=300)
    assert holder.returncode == 0, err
    assert not (out / LOCK).exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST] + [s.file for s in read_manifest(out).shards]
    )
    pd.testing.assert_frame_equal(sorted_rows(read_shards(out)), reference[1])
    again = cli_run(source_dir, corpus_dir, out)  # the folder is free again: nothing left to do
    assert again.returncode == 0, again.stderr
    assert "this run: 0 tokens" in again.stdout


def test_a_killed_run_leaves_no_stale_claim(reference, source_dir, corpus_dir, tmp_path):
    out = tmp_path / "out"
    holder, _ = start_holder(source_dir, corpus_dir, out, tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=60)
    assert (out / LOCK).exists()  # the file may stay; the lock died with its process
    run_corpus(job_for(source_dir, corpus_dir, out))
    pd.testing.assert_frame_equal(sorted_rows(read_shards(out)), reference[1])


def test_the_claim_in_one_process(tmp_path, source_dir, corpus_dir):
    out = tmp_path / "out"
    with claim_output(out):
        assert (out / LOCK).read_text().startswith(f"pid {os.getpid()} on ")
        with pytest.raises(CorpusError, match="being written by another corpus run"):
            run_corpus(job_for(source_dir, corpus_dir, out))
    assert not out.exists(), "a claim that wrote nothing leaves nothing behind"
    with pytest.raises(CorpusError, match="does not exist"):  # fails before claiming
        run_corpus(job_for(source_dir, tmp_path / "nope", out))
    assert not out.exists()


def test_resuming_with_other_shard_and_token_limits_gives_the_same_rows(
    reference, source_dir, corpus_dir, tmp_path
):
    """Neither --shard-tokens nor --max-tokens changes a window's rows (the manifest records
    windows, not shard sizes), so a rerun may change them: they are not the run's identity."""
    out = tmp_path / "out"
    run_corpus(job_for(source_dir, corpus_dir, out, max_tokens=40), max_windows=3)
    run_corpus(job_for(source_dir, corpus_dir, out, shard_tokens=25, max_tokens=90))
    run_corpus(job_for(source_dir, corpus_dir, out, shard_tokens=500))
    rows = sorted_rows(read_shards(out))
    assert not rows.duplicated(KEYS).any()
    pd.testing.assert_frame_equal(rows, reference[1])


# --------------------------------------------------------------------------------------
# Shards checked against the manifest


def every_reader(out, source_dir, corpus_dir):
    """Each way of reading a folder, each expected to refuse it."""
    return [
        lambda: corpus_stats(out),
        lambda: read_shards(out),
        lambda: run_corpus(job_for(source_dir, corpus_dir, out)),
    ]


def test_flipped_bytes_in_a_shard_are_detected(copy, source_dir, corpus_dir, capsys):
    shard = copy / read_manifest(copy).shards[1].file
    data = bytearray(shard.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + 64):  # inside the data pages, not the footer
        data[i] ^= 0xFF
    shard.write_bytes(bytes(data))
    for read in every_reader(copy, source_dir, corpus_dir):
        with pytest.raises(CorpusError, match=f"The shard {shard} is damaged or was replaced"):
            read()
    assert main(["corpus-stats", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The shard") and "SHA-256 does not match" in err


def test_a_shard_swapped_for_another_is_detected(copy, source_dir, corpus_dir):
    entries = read_manifest(copy).in_order()
    other = next(e for e in entries[1:] if e.rows != entries[0].rows)
    shutil.copyfile(copy / other.file, copy / entries[0].file)
    message = f"holds {other.rows:,} rows where the run wrote {entries[0].rows:,}"
    for read in every_reader(copy, source_dir, corpus_dir):
        with pytest.raises(CorpusError, match=message):
            read()


def test_a_missing_shard_is_detected(copy, source_dir, corpus_dir):
    (copy / read_manifest(copy).shards[0].file).unlink()
    for read in every_reader(copy, source_dir, corpus_dir):
        with pytest.raises(CorpusError, match="lists is missing"):
            read()


def edit_manifest(out, change):
    data = json.loads((out / MANIFEST).read_text())
    change(data)
    (out / MANIFEST).write_text(json.dumps(data))


def test_edited_row_counts_are_detected(copy):
    def more_rows(data):
        data["shards"][0]["rows"] += 1

    edit_manifest(copy, more_rows)
    with pytest.raises(CorpusError, match="records .* the manifest was edited"):
        corpus_stats(copy)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("file", "../elsewhere/shard-00000.parquet", "names the file '../elsewhere/"),
        ("file", "/etc/passwd", "names the file '/etc/passwd'"),
        ("file", "shard-00001.parquet", "it must be 'shard-00000.parquet'"),
        ("rows", 1.5, "rows must be a whole number"),
        ("rows", "12", "rows must be a whole number"),
        ("rows", float("inf"), "rows must be a whole number"),
        ("tokens", -1, "tokens must be a whole number"),
        ("sha256", "not-a-hash", "no valid sha256"),
        ("start", [0, "a.txt", 0.5], "index must be a whole number"),
    ],
)
def test_manifest_entries_a_run_never_writes_are_refused(copy, capsys, field, value, message):
    def change(data):
        data["shards"][0][field] = value

    edit_manifest(copy, change)
    with pytest.raises(CorpusError, match="is corrupt") as err:
        read_manifest(copy)
    assert message in str(err.value)
    assert main(["corpus-stats", str(copy)]) == 2
    printed = capsys.readouterr().err
    assert printed.startswith("error: ") and message in printed and "Traceback" not in printed
