"""W&B logging, offline: what lands on disk, and that failures are one clear JSAEError.

Every test points wandb at a closed local port (WANDB_BASE_URL=http://127.0.0.1:9) and keeps
all of wandb's folders under tmp_path, so nothing can reach the network or the home folder.
"""

import json
import struct
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wandb

from jsae.ablation import ablate
from jsae.analysis import analyse
from jsae.cli import main
from jsae.corpus import corpus_stats, run_corpus
from jsae.errors import JSAEError
from jsae.provenance import read_provenance
from jsae.sampler import PairSampler, sample_pairs, sample_result
from jsae.stats import Tolerance, summarize
from jsae.wandb_log import (
    WandbLogError,
    WandbTarget,
    histogram,
    log_corpus_to_wandb,
    log_to_wandb,
)
from tests.helpers import tiny_model, tiny_pair

FAKE_KEY = "jsaefakekey" + "0123456789abcdef" * 2  # 43 characters, shaped like a real key
PROMPT = "The quick brown fox jumps over the lazy dog. def f(x): return x"
BLOCK = 32 * 1024


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """wandb in offline mode, every folder under tmp_path, a fake key, no reachable server."""
    env = {
        "WANDB_MODE": "offline",
        "WANDB_DIR": tmp_path / "wandb-dir",
        "WANDB_CACHE_DIR": tmp_path / "wandb-cache",
        "WANDB_DATA_DIR": tmp_path / "wandb-data",
        "WANDB_CONFIG_DIR": tmp_path / "wandb-config",
        "WANDB_ARTIFACT_DIR": tmp_path / "wandb-artifacts",
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_BASE_URL": "http://127.0.0.1:9",
        "WANDB_API_KEY": FAKE_KEY,
        "NETRC": tmp_path / "no-netrc",
        "HOME": tmp_path / "home",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    (tmp_path / "home").mkdir()
    # wandb keeps its settings and credentials per process from its first use: start from,
    # and leave behind, a clean slate so these variables (and nothing earlier) apply
    wandb.teardown()
    yield tmp_path
    wandb.teardown()


@pytest.fixture(scope="module")
def result():
    model = tiny_model()
    return ablate(model, tiny_pair(model, 1), PROMPT, eps=0.05)


def read_records(run_dir):
    """The run's records, once wandb has flushed them: its service writes the .wandb file
    asynchronously, so shut it down (which flushes) and wait for the exit record."""
    wandb.teardown()
    deadline = time.monotonic() + 30
    while True:
        records = parse_records(run_dir)
        if of_kind(records, "exit") or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def parse_records(run_dir):
    """Decode a run's .wandb transaction log (LevelDB-style 32 KiB blocks of records) with
    wandb's own protobuf classes; independent of the code under test."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, partial = [], 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            records.append(payload)
        elif kind in (2, 3):
            partial += payload
        elif kind == 4:
            records.append(partial + payload)
            partial = b""
    out = []
    for payload in records:
        record = pb.Record()
        record.ParseFromString(payload)
        out.append(record)
    return out


def of_kind(records, kind):
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def files_containing(root, needle: bytes):
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_offline_run_holds_config_summary_histogram_and_artifact(offline, result, capfd):
    tol = Tolerance(atol=0.02, rtol=0.05)
    info = log_to_wandb(result, source_name="tiny", eps=0.1, tolerance=tol)
    assert info.mode == "offline" and info.url is None and info.dir.is_dir()
    assert info.dir.parent == offline / "wandb-dir" / "wandb"
    records = read_records(info.dir)

    (run,) = of_kind(records, "run")
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["layer"] == 1 and config["eps"] == 0.1 and config["source"] == "tiny"
    assert config["pair"] == "jsae" and config["mode"] == "unit" and config["scale"] == 1.0
    assert config["tokens"] == result.n_tokens and config["atol"] == 0.02
    assert (config["k_in"], config["k_out"]) == (8, 8)

    summary = {}
    for record in of_kind(records, "summary"):
        summary |= {item.key: json.loads(item.value_json) for item in record.update if item.key}
    expected = summarize(result.with_eps(0.1).table, tol)
    for experiment in ("important", "unimportant", "all"):
        assert summary[f"{experiment}/connections"] == expected.loc[experiment, "connections"]
        assert summary[f"{experiment}/mean_abs_diff"] == pytest.approx(
            expected.loc[experiment, "mean_abs_diff"], rel=1e-12
        )
    ratio = (
        expected.loc["important", "mean_abs_diff"] / expected.loc["unimportant", "mean_abs_diff"]
    )
    assert summary["importance_ratio"] == pytest.approx(ratio, rel=1e-12)

    # the histogram table, as written to the run's media folder
    (table_file,) = (info.dir / "files" / "media" / "table").glob("diff_histogram_*.table.json")
    table = json.loads(table_file.read_text())
    hist = pd.DataFrame(table["data"], columns=table["columns"])
    diff = result.table["diff"].to_numpy(float)
    important = np.abs(result.table["jacobian"].to_numpy()) > 0.1
    edges = np.linspace(diff.min(), diff.max(), 51)
    assert hist["important"].tolist() == np.histogram(diff[important], edges)[0].tolist()
    assert hist["unimportant"].tolist() == np.histogram(diff[~important], edges)[0].tolist()

    # the artifact: its manifest names connections.parquet, staged on disk with the rows
    (artifact,) = [a for a in of_kind(records, "artifact") if a.type == "ablation-connections"]
    assert artifact.name == info.artifact
    (entry,) = artifact.manifest.contents
    assert entry.path == "connections.parquet"
    staged = pd.read_parquet(entry.local_path)
    pd.testing.assert_frame_equal(staged, result.with_eps(0.1).table, check_categorical=False)

    # the API key is never written anywhere, nor printed
    assert files_containing(offline, FAKE_KEY.encode()) == []
    out, err = capfd.readouterr()
    assert FAKE_KEY not in out + err


def test_the_analysis_joins_the_summary_as_the_cli_and_app_show_it(offline):
    model = tiny_model()
    pair = tiny_pair(model, layer=1)
    result = ablate(model, pair, PROMPT, eps=0.05)
    found = analyse(model, pair, result, n_bootstrap=20)
    info = log_to_wandb(result, source_name="tiny", analysis=found)
    summary = {}
    for record in of_kind(read_records(info.dir), "summary"):
        summary |= {item.key: json.loads(item.value_json) for item in record.update if item.key}
    assert summary["verdict/level"] == found.verdict.level
    assert summary["verdict/sentence"] == found.verdict.sentence
    assert summary["verdict/perverse"] is found.verdict.perverse
    stats = found.statistics
    assert summary["analysis/auc"] == pytest.approx(stats.auc, rel=1e-12)
    assert summary["analysis/auc_ci_low"] == pytest.approx(stats.auc_ci[0], rel=1e-12)
    assert summary["analysis/output_cv"] == pytest.approx(found.health.output_cv, rel=1e-12)


def test_histogram_counts_every_connection(result):
    hist = histogram(result.table, bins=7)
    assert len(hist) == 7
    assert hist["important"].sum() == result.table["important"].sum()
    assert hist["unimportant"].sum() == (~result.table["important"]).sum()
    assert (hist["bin_right"] > hist["bin_left"]).all()


def test_online_without_a_reachable_server_is_one_clear_error(offline, result, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    with pytest.raises(WandbLogError) as err:
        log_to_wandb(result, source_name="tiny", target=WandbTarget(timeout=3))
    message = str(err.value)
    assert isinstance(err.value, JSAEError)
    assert message.startswith("Could not log to W&B (online)") and "network" in message
    assert "127.0.0.1:9" in message  # it did try the (closed) server
    assert FAKE_KEY not in message
    assert files_containing(offline, FAKE_KEY.encode()) == []


def test_online_without_an_api_key_is_one_clear_error(offline, result, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY")
    with pytest.raises(WandbLogError, match="No W&B API key found: run `wandb login`"):
        log_to_wandb(result, source_name="t", target=WandbTarget(mode="online", timeout=3))


def test_bad_mode_is_refused(offline, result, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with pytest.raises(WandbLogError, match="online or offline.*WANDB_MODE"):
        log_to_wandb(result, source_name="t")


def test_corpus_run_logs_its_summary_and_manifest(offline, tmp_path):
    from tests.test_corpus import job_for, make_corpus, make_source

    source = make_source(tmp_path / "src")
    corpus = make_corpus(tmp_path / "corpus", {"a.txt": PROMPT * 3})
    run = run_corpus(job_for(source, corpus, tmp_path / "out"))
    stats = corpus_stats(tmp_path / "out")
    info = log_corpus_to_wandb(tmp_path / "out", stats, run=run)
    records = read_records(info.dir)
    (run_record,) = of_kind(records, "run")
    config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
    assert config["layer"] == 1 and config["eps"] == 0.05 and config["tokens"] == run.tokens
    (artifact,) = [a for a in of_kind(records, "artifact") if a.type == "corpus-manifest"]
    (entry,) = artifact.manifest.contents
    assert entry.path == "manifest.json"
    assert json.loads(Path(entry.local_path).read_text())["config"]["layer"] == 1
    assert files_containing(offline, FAKE_KEY.encode()) == []


def test_cli_wandb_flag_logs_offline(offline, tmp_path, capsys):
    from jsae.loading import save_source

    model = tiny_model()
    src = save_source(tmp_path / "src", model, {"jsae": {1: tiny_pair(model, 1)}})
    code = main(
        [
            "ablate",
            "--source",
            str(src),
            "--prompt",
            PROMPT,
            "--no-progress",
            "--wandb",
            "--wandb-mode",
            "offline",
            "--wandb-project",
            "p",
            "--wandb-dir",
            str(tmp_path / "w"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "logged to W&B offline in" in out and "wandb sync" in out
    (run_dir,) = (tmp_path / "w" / "wandb").glob("offline-run-*")
    (run,) = of_kind(read_records(run_dir), "run")
    assert run.project == "p"
    assert FAKE_KEY not in out


def test_cli_checks_for_a_key_before_the_work(offline, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY")
    out = tmp_path / "out"
    args = ["ablate", "--source", "nowhere", "--dataset", str(tmp_path), "--output", str(out)]
    assert main([*args, "--wandb", "--wandb-mode", "online", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No W&B API key found") and not out.exists()


def test_a_sampled_run_records_its_sampler_in_config_and_artifact(offline, result):
    sampler = PairSampler("random", 4)
    info = log_to_wandb(sample_result(result, sampler), source_name="tiny")
    records = read_records(info.dir)
    (run,) = of_kind(records, "run")
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert (config["pairs"], config["pairs_seed"]) == ("random", 4)
    (artifact,) = [a for a in of_kind(records, "artifact") if a.type == "ablation-connections"]
    (entry,) = artifact.manifest.contents
    assert PairSampler.of(read_provenance(entry.local_path)) == sampler
    staged = pd.read_parquet(entry.local_path)
    assert len(staged) == len(sample_pairs(result.table, sampler)) < len(result.table)
