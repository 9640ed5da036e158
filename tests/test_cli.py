import os
import subprocess
import sys

import pandas as pd
import pytest

from jsae.ablation import ablate
from jsae.cli import main
from jsae.loading import load_source, save_source
from jsae.stats import summarize
from tests.helpers import tiny_model, tiny_pair

PROMPT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def source_dir(tmp_path):
    model = tiny_model()
    pairs = {
        "jsae": {0: tiny_pair(model, 0), 1: tiny_pair(model, 1)},
        "plain": {1: tiny_pair(model, 1, kind="plain")},
    }
    return save_source(tmp_path / "src", model, pairs)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_ablate_writes_the_table_and_prints_the_summary(source_dir, tmp_path, capsys, suffix):
    out = tmp_path / f"results{suffix}"
    code = main(
        [
            "ablate",
            "--source",
            str(source_dir),
            "--layer",
            "1",
            "--pair",
            "plain",
            "--prompt",
            PROMPT,
            "--eps",
            "0.05",
            "--mode",
            "zero",
            "--output",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    table = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    source = load_source(source_dir)
    from jsae.ablation import AblationConfig

    expected = ablate(
        source.model, source.pair(1, "plain"), PROMPT, eps=0.05, config=AblationConfig(mode="zero")
    )
    assert len(table) == len(expected.table)
    pd.testing.assert_series_equal(
        table["diff"], expected.table["diff"], check_dtype=False, atol=1e-6
    )
    printed = capsys.readouterr().out
    summary = summarize(expected.table)
    assert f"{summary.loc['important', 'connections']:,}" in printed
    assert "Important" in printed and "Unimportant" in printed and "mode zero" in printed


def test_scale_and_prompt_file(source_dir, tmp_path, capsys):
    prompt_file = tmp_path / "p.txt"
    prompt_file.write_text(PROMPT, encoding="utf-8")
    assert (
        main(
            [
                "ablate",
                "--source",
                str(source_dir),
                "--prompt-file",
                str(prompt_file),
                "--scale",
                "0.5",
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "mode scale (s = 0.5)" in printed and "layer 0" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "   "], "prompt is empty"),
        (["--prompt", "x", "--eps", "0"], "ε must be a finite number greater than 0"),
        (["--prompt", "x", "--eps", "nan"], "ε must be"),
        (["--prompt", "x", "--layer", "7"], "Layer 7 has no jsae pair"),
        (["--prompt", "x", "--pair", "plain", "--layer", "0"], "Layer 0 has no plain pair"),
        (["--prompt", "x", "--mode", "zero", "--scale", "2"], "drop --mode zero or drop --scale"),
        (["--prompt", "x", "--output", "r.xlsx"], "must end in .parquet or .csv"),
        (["--prompt-file", "/no/such/file.txt"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2(source_dir, capsys, args, message):
    assert main(["ablate", "--source", str(source_dir), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_missing_source_from_a_real_process_prints_no_traceback(tmp_path):
    env = {**os.environ, "JSAE_CACHE": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jsae.cli",
            "ablate",
            "--source",
            str(tmp_path / "nope"),
            "--prompt",
            "hi",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "is not a folder on this machine" in proc.stderr


def test_truncation_notice(tmp_path, capsys):
    model = tiny_model(n_ctx=8)
    src = save_source(tmp_path / "s", model, {"jsae": {0: tiny_pair(model, 0)}})
    assert main(["ablate", "--source", str(src), "--prompt", PROMPT, "--no-progress"]) == 0
    assert "were dropped to fit the limit of 8 tokens" in capsys.readouterr().err


def test_info_lists_layers(source_dir, capsys):
    assert main(["info", "--source", str(source_dir)]) == 0
    out = capsys.readouterr().out
    assert "jsae  layer 0" in out and "plain layer 1" in out
