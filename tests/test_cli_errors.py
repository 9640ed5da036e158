"""The last tracebacks and surprises of the command line: each is one ``error:`` line (exit 2)
or does what its help says."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jsae.ablation import AblationConfig
from jsae.cli import INTERRUPTED, main
from jsae.errors import InputError
from jsae.loading import save_sae_lens_pair, save_source
from tests.helpers import tiny_model, tiny_pair

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    model = tiny_model()
    return save_source(
        tmp_path_factory.mktemp("src") / "src", model, {"jsae": {1: tiny_pair(model, 1)}}
    )


@pytest.fixture
def corpus_dir(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text(PROMPT * 4)
    return tmp_path / "corpus"


def one_error_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert line.startswith("error: ") and message in line, line


def ablate_args(source_dir, *extra):
    return ["ablate", "--source", str(source_dir), "--no-progress", *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--memory-budget-mb", "inf"], "--memory-budget-mb must be a positive finite number"),
        (["--scale", "1e39"], "within float32's range"),
        (["--scale", "1e300"], "within float32's range"),
        (["--scale=-1e39"], "within float32's range"),
        (["--scale", "0"], "The scale must not be 0"),
    ],
)
def test_numbers_the_engine_cannot_use(source_dir, capsys, extra, message):
    one_error_line(capsys, ablate_args(source_dir, "--prompt", PROMPT, *extra), message)


def test_scale_limits_in_the_library():
    with pytest.raises(InputError, match="within float32's range"):
        AblationConfig(mode="scale", scale=1e39)
    with pytest.raises(InputError, match="must not be 0"):
        AblationConfig(mode="scale", scale=0.0)
    with pytest.raises(InputError, match="positive whole number of bytes"):
        AblationConfig(memory_budget=float("inf"))
    assert AblationConfig(mode="scale", scale=-3e38).scale == -3e38


def copy_source(source_dir, tmp_path):
    return Path(shutil.copytree(source_dir, tmp_path / "copy"))


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ({"model": "model", "pairs": []}, "needs 'pairs'"),
        ({"model": 5, "pairs": {}}, "needs 'model'"),
        ({"model": "model", "pairs": {"jsae": ["a"]}}, "pairs.jsae must map layers to folders"),
        ({"model": "model", "pairs": {"jsae": {"x": "p"}}}, "has the layer 'x'; use a number"),
        ({"model": "model", "pairs": {"jsae": {"1": 7}}}, "pairs.jsae.1 must name a folder"),
        ({"model": "model", "pairs": {"big": {"1": "p"}}}, "lists pairs of kind 'big'"),
    ],
)
def test_a_malformed_source_json(source_dir, tmp_path, capsys, manifest, message):
    folder = copy_source(source_dir, tmp_path)
    (folder / "source.json").write_text(json.dumps(manifest))
    one_error_line(capsys, ablate_args(folder, "--prompt", PROMPT), message)


@pytest.mark.parametrize("k", [0, 65, True, 2.5])
def test_sae_lens_pair_with_an_impossible_k(source_dir, tmp_path, capsys, k):
    model = tiny_model()
    folder = save_sae_lens_pair(tiny_pair(model, 1), tmp_path / "pair")
    edit_json(folder / "in" / "cfg.json", lambda c: c.update(k=k))
    args = ablate_args(folder, "--model", str(source_dir / "model"), "--prompt", PROMPT)
    one_error_line(capsys, args, f"The input SAE has k={k!r}; k must be a whole number from 1")


def test_research_cfg_with_k_true(source_dir, tmp_path, capsys):
    folder = copy_source(source_dir, tmp_path)
    cfg = folder / "pairs/jsae/layer_1/cfg.json"
    edit_json(cfg, lambda c: c.update(activation_fn_kwargs={"k": True}))
    one_error_line(capsys, ablate_args(folder, "--prompt", PROMPT), "needs activation_fn_kwargs.k")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"d_vocab": "x"}, "config.json does not describe a model that can be built"),
        ({"n_layers": 1.5}, "config.json does not describe a model that can be built"),
        ({"n_ctx": -1}, "config.json does not describe a model that can be built"),
        (
            {"d_model": 32},
            "W_K has shape (4, 16, 4) there, but the model's config makes it (4, 32, 4)",
        ),
        ({"n_layers": 1}, "unexpected ['blocks.1."),
    ],
)
def test_a_model_folder_whose_config_does_not_fit(source_dir, tmp_path, capsys, change, message):
    folder = copy_source(source_dir, tmp_path)
    edit_json(folder / "model" / "config.json", lambda c: c.update(change))
    one_error_line(capsys, ablate_args(folder, "--prompt", PROMPT), message)


# --------------------------------------------------------------------------------------
# --max-tokens, --dataset and --output


def test_max_tokens_one_ablates_one_token(source_dir, capsys):
    assert main(ablate_args(source_dir, "--prompt", PROMPT, "--max-tokens", "1")) == 0
    assert "\n1 tokens ablated, 64 connections" in capsys.readouterr().out


def test_a_binary_dataset_is_refused(source_dir, tmp_path, capsys):
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(1, 256)) * 8)
    args = ablate_args(source_dir, "--dataset", str(binary), "--output", str(tmp_path / "out"))
    one_error_line(capsys, args, f"{binary} is not UTF-8 text")
    assert not (tmp_path / "out").exists()
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text(PROMPT)
    (folder / "b.txt").write_bytes(b"text\x00\x01\x02 with NUL bytes")
    args = ablate_args(source_dir, "--dataset", str(folder), "--output", str(tmp_path / "out"))
    one_error_line(capsys, args, "b.txt is not text (it holds NUL bytes)")


def test_bytes_that_are_not_utf8_later_in_a_file_stop_the_run(source_dir, tmp_path, capsys):
    from jsae.corpus.reader import SNIFF_BYTES

    text = tmp_path / "late.txt"
    text.write_bytes(PROMPT.encode() * (SNIFF_BYTES // len(PROMPT) + 10) + b"\xff\xfe tail")
    args = ablate_args(source_dir, "--dataset", str(text), "--output", str(tmp_path / "out"))
    one_error_line(capsys, args, f"{text} is not UTF-8 text")


def refuse_to_compute(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the computation started")

    monkeypatch.setattr("jsae.cli.ablate.ablate", boom)
    monkeypatch.setattr("jsae.cli.ablate.load_source", boom)
    monkeypatch.setattr("jsae.cli.corpus.run_corpus", boom)


def unwritable_folder(tmp_path) -> Path:
    """A folder that takes no new files, even for root where permissions do not apply."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    if os.geteuid() == 0:
        folder = Path("/sys")
        if os.access("/sys", os.W_OK) and _can_create(folder):
            pytest.skip("no folder here refuses new files to root")
    return folder


def _can_create(folder: Path) -> bool:
    try:
        (folder / "jsae-probe").touch()
    except OSError:
        return False
    (folder / "jsae-probe").unlink()
    return True


@pytest.mark.parametrize("corpus", [False, True])
def test_output_is_checked_before_the_computation(
    source_dir, corpus_dir, tmp_path, capsys, monkeypatch, corpus
):
    refuse_to_compute(monkeypatch)
    run = ["--dataset", str(corpus_dir)] if corpus else ["--prompt", PROMPT]
    name = "out" if corpus else "r.parquet"
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    cases = [
        (a_file / "x" / name, f"cannot be written: {a_file} is a file, not a folder"),
        (unwritable_folder(tmp_path) / "sub" / name, "cannot be written: Permission denied"),
    ]
    if not corpus:
        (tmp_path / "dir.parquet").mkdir()
        cases.append((tmp_path / "dir.parquet", "is a folder; name a file in it"))
    for output, message in cases:
        one_error_line(capsys, ablate_args(source_dir, *run, "--output", str(output)), message)


# --------------------------------------------------------------------------------------
# Ctrl-C while the package is still importing

INTERRUPT_WHILE_IMPORTING = """
import builtins, os, runpy, signal, sys

real = builtins.__import__


def interrupting(name, *args, **kwargs):  # Ctrl-C just as torch starts loading
    if name == "torch" or name.startswith("torch."):
        builtins.__import__ = real
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)


builtins.__import__ = interrupting
sys.argv = ["jsae", "info"]
if ENTRY == "module":
    runpy.run_module("jsae.cli", run_name="__main__", alter_sys=True)
else:  # what the console script `jsae` does
    from jsae.cli import main

    sys.exit(main())
"""


@pytest.mark.parametrize("entry", ["module", "console script"])
def test_ctrl_c_while_importing_is_one_line_and_status_130(entry):
    code = INTERRUPT_WHILE_IMPORTING.replace("ENTRY", repr(entry))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == INTERRUPTED == 130, proc.stderr
    assert proc.stderr.strip() == "interrupted"


def test_importing_the_command_line_loads_no_torch():
    code = "import sys, jsae, jsae.cli; print('torch' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stdout.strip() == "False", proc.stderr
