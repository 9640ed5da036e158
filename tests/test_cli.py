import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from jsae.ablation import ablate
from jsae.analysis import analyse
from jsae.cli import main
from jsae.loading import load_source, save_source
from jsae.prompt import mlp_inputs
from jsae.stats import summarize
from tests.helpers import tiny_model, tiny_pair, tiny_pairs
from tests.reference import downstream_loop, joint_loop

PROMPT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def source_dir(tmp_path):
    model = tiny_model()
    pairs = tiny_pairs(model)
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
    # the analysis under the summary: the package's own numbers and verdict
    found = analyse(source.model, source.pair(1, "plain"), expected, n_bootstrap=200)
    assert f"verdict: {found.verdict.headline}" in printed
    auc_line = next(line for line in printed.splitlines() if line.strip().startswith("auc "))
    assert f"{found.statistics.auc:.4g}" in auc_line
    lo, hi = found.statistics.auc_ci
    assert f"[{lo:.4g}, {hi:.4g}]" in auc_line
    assert "where the movement comes from" in printed and "output_cv" in printed


def _printed_summary(printed: str) -> dict[str, list[float]]:
    """The printed summary table's rows as numbers: {label: [important, unimportant, all]}."""
    lines = printed.splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.split() == ["Important", "Unimportant", "All"]
    )
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        label, *cells = re.split(r"\s{2,}", line.strip())
        rows[label] = [float(c.replace(",", "").rstrip("%")) for c in cells]
    return rows


def test_scale_and_prompt_file(source_dir, tmp_path, capsys):
    """The printed numbers, against numpy on the written table (not the summary code)."""
    prompt_file = tmp_path / "p.txt"
    prompt_file.write_text(PROMPT, encoding="utf-8")
    out = tmp_path / "r.parquet"
    args = ["ablate", "--source", str(source_dir), "--prompt-file", str(prompt_file)]
    assert main([*args, "--scale", "0.5", "--output", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "mode scale (s = 0.5)" in printed and "layer 0" in printed and "ε = 0.01" in printed
    table = pd.read_parquet(out)
    model = load_source(source_dir).model
    n_tokens = model.to_tokens(PROMPT).shape[1] - 1  # BOS is not ablated
    assert table["position"].nunique() == n_tokens
    assert f"{n_tokens} tokens ablated, {len(table):,} connections (k_out 8 × k_in 8" in printed
    assert len(table) == n_tokens * 8 * 8
    jac = table["jacobian"].to_numpy(np.float64)
    diff = table["diff"].to_numpy(np.float64)
    np.testing.assert_allclose(table["predicted"], -0.5 * jac, rtol=1e-6)  # s = 0.5 reached J
    important = np.abs(jac) > 0.01
    # within tolerance of −s·J by the printed rule |diff − (−s·J)| <= 0.01 + 0.1·|s·J|
    assert "|diff − (−s·J)| <= 0.01 + 0.1·|s·J|" in printed
    within = np.abs(diff + 0.5 * jac) <= 0.01 + 0.1 * np.abs(0.5 * jac)
    rows = _printed_summary(printed)
    for c, part in enumerate((important, ~important, np.ones(len(diff), bool))):
        d = diff[part]
        assert rows["Connections"][c] == part.sum()
        assert rows["Mean diff"][c] == pytest.approx(d.mean(), rel=1e-3)
        assert rows["Mean |diff|"][c] == pytest.approx(np.abs(d).mean(), rel=1e-3)
        assert rows["Median |diff|"][c] == pytest.approx(np.median(np.abs(d)), rel=1e-3)
        assert rows["99th pct |diff|"][c] == pytest.approx(np.quantile(np.abs(d), 0.99), rel=1e-3)
        assert rows["Within tolerance of −s·J"][c] == pytest.approx(
            100 * within[part].mean(), abs=0.05
        )
    assert important.any() and (~important).any()
    ratio = np.abs(diff[important]).mean() / np.abs(diff[~important]).mean()
    assert f"mean |diff| important / unimportant: {ratio:.3g}" in printed


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
        (["--prompt", "x", "--bootstrap", "-1"], "--bootstrap must be 0 or more"),
        (["--prompt", "x y z", "--tau", "-1"], "τ"),
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


def test_planted_source_prints_the_true_edge_table(tmp_path, capsys):
    """``jsae ablate --source planted`` prints precision and recall against the true edges;
    checked against the written table and the planted graph's edges, counted in numpy."""
    from jsae.loading import PLANTED_SOURCE

    out = tmp_path / "t.parquet"
    args = ["ablate", "--source", PLANTED_SOURCE, "--prompt", PROMPT, "--no-progress"]
    assert main([*args, "--bootstrap", "0", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"source {PLANTED_SOURCE} · layer 0 · true pair" in printed, "the first kind"
    table = pd.read_parquet(out)
    graph = load_source(PLANTED_SOURCE).ground_truth.graph
    edge = graph.weights[table["in_feature"], table["out_feature"]] != 0
    for rule, flagged in (
        ("important", np.abs(table["jacobian"]) > 0.01),
        ("moved", np.abs(table["diff"]) > 0.1),
    ):
        hits = int((flagged & edge).sum())
        precision, recall = hits / flagged.sum(), hits / edge.sum()
        line = re.search(rf"^{rule} \(.*$", printed, re.MULTILINE).group(0)
        assert line.split()[-5:] == [
            str(int(flagged.sum())),
            str(int(edge.sum())),
            str(hits),
            f"{precision:.4f}",
            f"{recall:.4f}",
        ]
    assert "against the true edges" in printed and "Off the true edges" in printed
    assert "verdict: Yes, the Jacobian's sparsity is sound" in printed
    assert main([*args, "--pair", "rotated", "--bootstrap", "0"]) == 0
    assert "verdict: Dense Jacobian." in capsys.readouterr().out
    assert main([*args, "--pair", "jsae"]) == 2
    err = capsys.readouterr().err
    assert "planted has no jsae pairs; it has: true, rotated, noisy, small_k" in err
    assert main(["info", "--source", PLANTED_SOURCE]) == 0
    assert "small_k layer 0: d_sae 48/48, k 4/7" in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# Corpus runs: jsae ablate --dataset, jsae corpus-stats


@pytest.fixture
def corpus_dir(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "one.txt").write_text(PROMPT * 4, encoding="utf-8")
    (folder / "two.txt").write_text("def f(x):\n    return x + 1\n" * 3, encoding="utf-8")
    return folder


def corpus_args(source_dir, corpus_dir, out, *extra):
    return [
        "ablate",
        "--source",
        str(source_dir),
        "--layer",
        "1",
        "--dataset",
        str(corpus_dir),
        "--output",
        str(out),
        "--window-tokens",
        "16",
        "--shard-tokens",
        "20",
        "--eps",
        "0.05",
        "--no-progress",
        *extra,
    ]


def test_ablate_dataset_resumes_and_corpus_stats_resplits(source_dir, corpus_dir, tmp_path, capsys):
    from jsae.corpus import read_manifest, read_shards
    from jsae.table import split

    out = tmp_path / "out"
    assert main(corpus_args(source_dir, corpus_dir, out, "--max-windows", "2")) == 0
    printed = capsys.readouterr().out
    assert "not finished: rerun the same command to continue" in printed
    assert read_manifest(out).windows == 2
    assert main(corpus_args(source_dir, corpus_dir, out)) == 0
    printed = capsys.readouterr().out
    assert "not finished" not in printed and "tokens/s" in printed
    rows = read_shards(out)
    assert not rows.duplicated(
        ["document", "window", "position", "in_feature", "out_feature"]
    ).any()
    expected = summarize(split(rows, 0.05))
    assert f"{expected.loc['unimportant', 'connections']:,}" in printed
    assert "read off a log-spaced histogram" in printed

    assert main(["corpus-stats", str(out), "--eps", "0.2", "--histogram"]) == 0
    printed = capsys.readouterr().out
    expected = summarize(split(rows, 0.2))
    assert "ε = 0.2" in printed and "|diff| histogram" in printed
    for experiment in ("important", "unimportant"):
        assert f"{expected.loc[experiment, 'connections']:,}" in printed
    assert f"{expected.loc['important', 'mean_abs_diff']:.4g}" in printed
    table = split(rows, 0.2)
    unimportant = table[~table["important"]]
    p_exit = unimportant["exited"].mean()
    assert "where the movement comes from" in printed and "P(exit)" in printed
    assert f"{p_exit:.4g}" in printed.split("P(exit)")[1].splitlines()[0]
    stays = unimportant[~unimportant["exited"]]["diff"].abs().mean()
    important = table[table["important"] & ~table["exited"]]["diff"].abs().mean()
    assert f"without exits: {important / stays:.3g}" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eps", "0.1"], "another configuration (eps: 0.05 there, 0.1 now)"),
        (["--mode", "zero"], "another configuration"),
    ],
)
def test_ablate_dataset_refuses_to_resume_another_run(
    source_dir, corpus_dir, tmp_path, capsys, args, message
):
    out = tmp_path / "out"
    assert main(corpus_args(source_dir, corpus_dir, out, "--max-windows", "1")) == 0
    capsys.readouterr()
    code = main(corpus_args(source_dir, corpus_dir, out, *args))  # the last --eps wins
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "CORPUS"], "--dataset needs --output DIR"),
        (["--dataset", "CORPUS", "--output", "r.parquet"], "--output is a folder of shards"),
        (["--dataset", "/no/such/corpus", "--output", "OUT"], "does not exist"),
        (["--dataset", "CORPUS", "--output", "OUT", "--max-tokens", "0"], "--max-tokens must"),
        (["--dataset", "CORPUS", "--output", "OUT", "--window-tokens", "0"], "--window-tokens"),
        (["--prompt", "x", "--window-tokens", "8"], "only apply to corpus runs"),
        (["--prompt", "x", "--engine", "ray"], "--engine ray only apply to corpus runs"),
    ],
)
def test_corpus_input_errors_are_one_line(source_dir, corpus_dir, tmp_path, capsys, args, message):
    args = [
        str(corpus_dir) if a == "CORPUS" else str(tmp_path / "out") if a == "OUT" else a
        for a in args
    ]
    assert main(["ablate", "--source", str(source_dir), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_corpus_stats_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["corpus-stats", str(tmp_path)]) == 2
    assert "is not a corpus output folder" in capsys.readouterr().err


def test_engine_ray_without_ray_says_how_to_install(
    source_dir, corpus_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code = main(corpus_args(source_dir, corpus_dir, tmp_path / "out", "--engine", "ray"))
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'jsae[ray]'" in err and "Traceback" not in err


@pytest.mark.parametrize("n", [1, 4])
def test_prompt_max_tokens_counts_ablated_tokens(source_dir, capsys, n):
    """--max-tokens N ablates N tokens: BOS, which is not ablated, does not count."""
    args = ["ablate", "--source", str(source_dir), "--prompt", PROMPT, "--no-progress"]
    assert main([*args, "--max-tokens", str(n)]) == 0
    printed = capsys.readouterr()
    assert f"\n{n} tokens ablated, {n * 8 * 8:,} connections" in printed.out
    assert f"dropped to fit the limit of {n + 1} tokens (BOS included)" in printed.err
    assert main([*args, "--max-tokens", str(n), "--include-bos"]) == 0
    printed = capsys.readouterr()
    assert f"\n{n} tokens ablated" in printed.out and f"limit of {n} tokens" in printed.err


def test_parser_defaults_and_choices_are_the_librarys(capsys):
    from jsae.ablation import MODES, AblationConfig
    from jsae.cli import build_parser
    from jsae.cli.options import resolve_mode
    from jsae.cli.rerun import resolve_settings
    from jsae.corpus import ENGINES
    from jsae.loading import DEMO_SOURCE
    from jsae.stats import Tolerance
    from jsae.table import DEFAULT_EPS
    from jsae.wandb_log import DEFAULT_PROJECT, WANDB_MODES

    parser = build_parser()
    args = parser.parse_args(["ablate", "--prompt", "x"])
    resolve_settings(args)  # what --from does not fill comes from the library
    config, tolerance = AblationConfig(), Tolerance()
    assert (args.eps, args.source, args.include_bos) == (DEFAULT_EPS, DEMO_SOURCE, False)
    assert (args.atol, args.rtol) == (tolerance.atol, tolerance.rtol)
    assert int(args.memory_budget_mb * 2**20) == config.memory_budget
    assert resolve_mode(args.mode, args.scale) == (config.mode, config.scale)
    # the pair kind is the source's to know: none given means the source's first
    assert (args.pair, args.engine, args.wandb_project) == (None, "local", DEFAULT_PROJECT)
    stats = parser.parse_args(["corpus-stats", "out"])
    assert (stats.atol, stats.rtol) == (tolerance.atol, tolerance.rtol) and stats.eps is None
    for flag, choices in (
        ("--mode", MODES),
        ("--engine", ENGINES),
        ("--wandb-mode", WANDB_MODES),
    ):
        for choice in choices:
            assert (
                getattr(
                    parser.parse_args(["ablate", "--prompt", "x", flag, choice]),
                    flag[2:].replace("-", "_"),
                )
                == choice
            )
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["ablate", "--prompt", "x", flag, "nope"])
        assert exit_.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_print_summary_shows_the_table_ratio_and_tolerance(source_dir, capsys):
    from jsae.cli.options import print_summary
    from jsae.stats import Tolerance, format_summary

    source = load_source(source_dir)
    table = ablate(source.model, source.pair(0), PROMPT).table
    tolerance = Tolerance(atol=0.02, rtol=0.3)
    summary = summarize(table, tolerance)
    print_summary(summary, tolerance)
    out = capsys.readouterr().out
    means = summary["mean_abs_diff"]
    ratio = means["important"] / means["unimportant"]
    assert format_summary(summary) in out
    assert f"mean |diff| important / unimportant: {ratio:.3g}" in out
    assert "within tolerance: |diff − (−s·J)| <= 0.02 + 0.3·|s·J|" in out


def test_ablate_joint_prints_the_sets_removed_together_as_the_loop_measures_them(
    source_dir, tmp_path, capsys
):
    """The printed joint means, against sets built from the written table's |J| and removed
    one set at a time through TransformerLens's MLP and sae-lens's encode."""
    out = tmp_path / "r.parquet"
    args = ["ablate", "--source", str(source_dir), "--prompt", PROMPT, "--mode", "zero"]
    assert main([*args, "--joint", "--output", str(out), "--no-progress", "--bootstrap", "20"]) == 0
    printed = capsys.readouterr().out
    assert "removed together (every active output feature j of every token; mode zero" in printed
    score = re.search(r"faithfulness score: (\S+) \[(\S+), (\S+)\]", printed)
    value, lo, hi = (float(g) for g in score.groups())
    assert lo <= value <= hi
    table = pd.read_parquet(out)
    source = load_source(source_dir)
    pair = source.pair(0, "jsae")
    x = mlp_inputs(source.model, source.model.to_tokens(PROMPT)[0], 0)
    for name, keep in (("unimportant", table["jacobian"].abs() <= 0.01), ("important", None)):
        keep = keep if keep is not None else table["jacobian"].abs() > 0.01
        removed = {
            (int(p), int(j)): rows["in_feature"].tolist()
            for (p, j), rows in table[keep].groupby(["position", "out_feature"])
        }
        diffs = joint_loop(source.model, pair, x, removed, "zero")
        line = re.search(rf"^  {name}\s+(\S+)\s+(\S+)", printed, re.M)
        size, mean_abs = float(line.group(1)), float(line.group(2))
        assert size == pytest.approx(np.mean([len(v) for v in removed.values()]), rel=5e-3)
        assert mean_abs == pytest.approx(np.mean(np.abs(list(diffs.values()))), rel=1e-3)
    # with no input kept, every output feature loses all its active inputs together
    tokens = source.model.to_tokens(PROMPT)[0]
    positions = sorted(table["position"].unique().tolist())
    every = {
        (int(p), int(j)): rows["in_feature"].tolist()
        for (p, j), rows in table.groupby(["position", "out_feature"])
    }
    kl = downstream_loop(source.model, pair, tokens, x, positions, every, "zero")
    none_kept = float(re.search(r"with no input kept: mean KL (\S+)", printed).group(1))
    assert none_kept == pytest.approx(kl.mean().item(), rel=1e-3)
    assert f"(mean over {len(positions)} positions;" in printed
