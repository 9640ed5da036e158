"""``jsae features``: the cards it writes are the library's for the same rows (a corpus read
with the corpus reader, or a token file), every layer and kind without --layer/--pair, and
each mistake one ``error:`` line with status 2."""

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from jsae.cli import main
from jsae.corpus import open_corpus
from jsae.features import FeatureCards, corpus_rows, feature_cards, load_rows
from jsae.features.settings import CONTEXTS_FILE, FEATURES_FILE, LOGITS_FILE
from jsae.loading import load_source, save_source
from tests.helpers import TEXT, tiny_model, tiny_pairs


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    model = tiny_model()
    return save_source(tmp_path_factory.mktemp("src") / "src", model, tiny_pairs(model))


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT * 20)
    return path


def test_cli_cards_equal_the_library_cards(source_dir, text, tmp_path, capsys):
    out = tmp_path / "cards"
    argv = ["features", "--source", str(source_dir), "--layer", "1", "--pair", "jsae"]
    argv += ["--dataset", str(text), "--max-tokens", "300", "--context", "32", "--output", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    # 10 rows of BOS + 31; one of the 310 is the BOS the document starts with (not counted)
    assert "jsae layer 1: 309 tokens" in printed and "bytes" in printed
    source = load_source(str(source_dir))
    rows = corpus_rows(source.model, open_corpus(text), 32, 300)
    assert rows.shape == (10, 32)
    want = feature_cards(source, 1, "jsae", rows, tmp_path / "lib", progress=False)
    got = FeatureCards.find(out, 1, "jsae")
    assert got is not None and torch.equal(torch.as_tensor(got.rows), rows)
    for name in (FEATURES_FILE, CONTEXTS_FILE, LOGITS_FILE):
        pd.testing.assert_frame_equal(
            pd.read_parquet(got.folder / name), pd.read_parquet(want / name)
        )


def test_cli_builds_every_pair_from_a_token_file(source_dir, tmp_path, capsys):
    rows = tiny_model().to_tokens([TEXT] * 3, prepend_bos=True)[:, :20]
    save_file({"tokens": rows.to(torch.int32)}, str(tmp_path / "rows.safetensors"))
    out = tmp_path / "cards"
    argv = [
        "features",
        "--source",
        str(source_dir),
        "--dataset",
        str(tmp_path / "rows.safetensors"),
    ]
    assert main([*argv, "--output", str(out), "--no-progress", "--max-tokens", "38"]) == 0
    for kind, layer in (("jsae", 0), ("jsae", 1), ("plain", 1)):
        cards = FeatureCards.find(out, layer, kind)
        assert cards is not None and cards.meta["sequences"] == 2  # 38 tokens: two rows of 19
    assert torch.equal(load_rows(next(out.glob("tokens-*.safetensors"))), rows[:2])


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "no held-out sample"),
        (["--dataset", "/nonexistent/corpus"], "does not exist"),
        (["--layer", "7", "--dataset", "x.txt"], "Layer 7 has no jsae pair"),
        (["--pair", "nope", "--dataset", "x.txt"], "has no nope pairs"),
        (["--max-tokens", "0", "--dataset", "x.txt"], "--max-tokens must be a positive"),
    ],
)
def test_cli_mistakes_are_one_line(source_dir, tmp_path, capsys, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.txt").write_text(TEXT)
    argv = ["features", "--source", str(source_dir), "--output", str(tmp_path / "o"), *extra]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
