"""The benchmark script runs end to end on small shapes and writes the JSON it promises.

No timing is asserted: only that every section ran and produced positive numbers."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_ablation.py"

pytestmark = pytest.mark.slow  # fresh interpreters for the memory and app sections


def _positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_quick_benchmark_writes_the_expected_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # the script finds the repository by itself
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {"meta", "engine", "loop", "floor", "ratios", "memory", "app", "targets"} <= set(report)

    assert report["meta"]["quick"] is True and report["meta"]["device"] == "cpu"
    engine = report["engine"]
    assert engine["connections"] == engine["tokens"] * report["meta"]["shapes"]["k"] ** 2
    assert engine["important"] + engine["unimportant"] == engine["connections"]
    for value in (engine["ms_per_token"], engine["results_bytes"], *engine["seconds"]):
        assert _positive(value)

    loop = report["loop"]
    assert _positive(loop["ms_per_token"]) and _positive(loop["connections"])
    assert loop["same_connections_as_engine"] is True
    assert loop["max_abs_diff_vs_engine"] < 1e-4, "the engine reproduces the notebook loop"

    floor = report["floor"]
    assert _positive(floor["ms_per_token"]) and _positive(floor["literal_ms_per_token"])
    for name in ("loop_over_engine", "engine_over_floor", "engine_over_floor_literal"):
        assert _positive(report["ratios"][name])

    runs = report["memory"]["runs"]
    assert [r["tokens"] for r in runs] == report["meta"]["shapes"]["memory_tokens"]
    for r in runs:
        for name in ("baseline_bytes", "peak_bytes", "results_bytes", "connections", "seconds"):
            assert _positive(r[name]), (name, r)
        assert r["peak_bytes"] >= r["baseline_bytes"]
    assert report["memory"]["peak_bytes"] == max(r["peak_bytes"] for r in runs)

    app = report["app"]
    assert app["status"] == "measured" or app["status"].startswith("not measured")
    if app["status"] == "measured":
        for name in ("cold_start_s", "load_s", "run_s", "first_run_s", "connections"):
            assert _positive(app[name])

    assert set(report["targets"]) == {"loop_over_engine", "engine_over_floor", "peak_bytes"}
    for target in report["targets"].values():
        assert isinstance(target["met"], bool) and _positive(target["value"])
    assert "ms/token" in proc.stdout and "loop over engine" in proc.stdout


def test_low_precision_needs_cuda_and_cuda_is_reported_missing(tmp_path):
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--dtype", "bfloat16"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "needs --device cuda" in bad.stderr
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        pytest.skip("a GPU is present: the cuda path runs for real in the full benchmark")
    out = tmp_path / "cuda.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--device", "cuda", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not measured (no CUDA device)" in proc.stdout
    assert json.loads(out.read_text())["cuda"]["status"] == "not measured (no CUDA device)"


def test_quick_prune_benchmark_sets_the_engines_side_by_side(tmp_path):
    out = tmp_path / "prune.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_prune.py"), "--quick", "--repeats",
         "1", "--skip", "memory", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    pairs = {row["pair"] for row in report["single"]}
    assert "random Pythia-shaped" in pairs and any(p.startswith("bundle") for p in pairs)
    for row in report["joint"]:
        for name in ("off", "on", "joint_on"):
            assert _positive(row[f"{name}_ms_per_token"])
        assert row["on_exited_equal"] and row["joint_on_exited_equal"]
        assert max(row["on_max_abs_act"], row["joint_on_max_abs_act"]) < 1e-5
    for row in report["single"]:
        assert _positive(row["off_ms_per_token"]) and _positive(row["on_ms_per_token"])
        assert row["exited_equal"], "the pruned engine reads the same exits"
        assert 0 < row["computed_fraction"] <= 1
        assert _positive(row["floor_ms_per_token"]) and row["entered_equal"]
        assert max(row["max_abs_diff"], row["max_abs_pre_diff"]) < 1e-5
