import dataclasses
import json
from unittest import mock

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from jsae.ablation import ablate
from jsae.errors import InputError, SourceError, UnsupportedError
from jsae.loading import (
    RESEARCH_CFG,
    RESEARCH_WEIGHTS,
    load_model_folder,
    load_pair_folder,
    load_research_pair,
    load_sae_lens_pair,
    load_source,
    save_model_folder,
    save_research_pair,
    save_sae_lens_pair,
    save_source,
)
from jsae.pair import PairKinds
from tests import fake_wandb
from tests.helpers import tiny_model, tiny_pair, tiny_pairs

PROMPT = "Alice: hi! Bob: hello, Alice."


def _same_pair(a, b):
    for side in ("sae_in", "sae_out"):
        for key in ("W_enc", "b_enc", "W_dec", "b_dec"):
            torch.testing.assert_close(
                getattr(getattr(a, side), key), getattr(getattr(b, side), key)
            )
        assert getattr(a, side).cfg.k == getattr(b, side).cfg.k
    assert (a.layer, a.kind) == (b.layer, b.kind)


def test_model_folder_round_trip(tmp_path):
    model = tiny_model()
    save_model_folder(model, tmp_path / "m")
    loaded = load_model_folder(tmp_path / "m")
    tokens = model.to_tokens(PROMPT)
    torch.testing.assert_close(loaded.to_tokens(PROMPT), tokens)
    torch.testing.assert_close(loaded(tokens), model(tokens))
    assert loaded.to_str_tokens(PROMPT)[0] == "<|endoftext|>"


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_research_pair_round_trip_and_format(tmp_path, apply_b_dec):
    model = tiny_model()
    pair = tiny_pair(model, layer=1, apply_b_dec_to_input=apply_b_dec)
    save_research_pair(pair, tmp_path, model_name="pythia-70m-deduped")
    weights = load_file(tmp_path / RESEARCH_WEIGHTS)
    assert set(weights) == {
        f"_{k}{s}" for k in ("W_enc", "b_enc", "W_dec", "b_dec") for s in ("", "_out")
    }
    assert weights["_W_enc"].shape == (16, 64) and weights["_W_dec_out"].shape == (64, 16)
    cfg = json.loads((tmp_path / RESEARCH_CFG).read_text())
    assert cfg["hook_name"] == "blocks.1.ln2.hook_normalized" and cfg["activation_fn_kwargs"] == {
        "k": 8
    }
    loaded, _ = load_research_pair(tmp_path)
    _same_pair(pair, loaded)
    assert loaded.sae_in.cfg.apply_b_dec_to_input is apply_b_dec


def _write_research_folder(path, pair, **cfg_changes):
    save_research_pair(pair, path, model_name="tiny")
    cfg = json.loads((path / RESEARCH_CFG).read_text())
    cfg.update({"extra_key_from_the_future": [1, 2], "neuronpedia_id": None}, **cfg_changes)
    (path / RESEARCH_CFG).write_text(json.dumps(cfg))


def test_research_folder_ignores_extra_keys_and_loads_with_a_model(tmp_path):
    model = tiny_model()
    pair = tiny_pair(model, layer=0)
    _write_research_folder(tmp_path, pair)
    source = load_source(str(tmp_path), model=model)
    assert source.kinds == ["jsae"] and source.layers() == [0]
    pd.testing.assert_frame_equal(
        ablate(model, pair, PROMPT).table, ablate(source.model, source.pair(0), PROMPT).table
    )


def test_sae_lens_pair_round_trip_both_ways(tmp_path):
    model = tiny_model()
    pair = tiny_pair(model, layer=1, kind="plain", k=6, k_out=5)
    save_sae_lens_pair(pair, tmp_path / "p")
    loaded, _ = load_sae_lens_pair(tmp_path / "p")
    _same_pair(pair, loaded)
    save_sae_lens_pair(loaded, tmp_path / "again")
    _same_pair(pair, load_pair_folder(tmp_path / "again")[0])


def test_source_folder_round_trip(tmp_path):
    model = tiny_model()
    pairs = tiny_pairs(model)
    save_source(tmp_path, model, pairs, info={"metrics": {"a": 1}})
    source = load_source(tmp_path)
    assert source.kinds == ["jsae", "plain"] and source.layers("plain") == [1]
    assert source.info == {"metrics": {"a": 1}}
    _same_pair(pairs["plain"][1], source.pair(1, "plain"))
    with pytest.raises(InputError, match="Layer 0 has no plain pair .* layers with one: 1"):
        source.pair(0, "plain")


def test_a_source_folder_declares_its_own_kinds(tmp_path):
    """A kind beyond the paper's round-trips with its label and comparisons; an undeclared one
    and a malformed declaration are each one clear error."""
    model = tiny_model()
    pairs = tiny_pairs(model)
    extra = dataclasses.replace(pairs["jsae"][1], kind="normalized")
    kinds = PairKinds(
        {"jsae": "JSAEs", "normalized": "Normalized", "plain": "Plain"},
        (("jsae", "plain"), ("normalized", "plain")),
        "three kinds",
    )
    save_source(tmp_path, model, {**pairs, "normalized": {1: extra}}, pair_kinds=kinds)
    source = load_source(tmp_path)
    assert source.kinds == ["jsae", "normalized", "plain"]
    assert source.pair_kinds == kinds and source.info == {}
    assert source.pair(1, "normalized").kind == "normalized"
    _same_pair(extra, source.pair(1, "normalized"))
    assert source.pair_kinds.compared_for("normalized") == ("normalized", "plain")

    # an undeclared kind is refused before anything is written
    bad = tmp_path / "undeclared"
    with pytest.raises(SourceError, match="kind 'normalized'.*declare others under 'pair_kinds'"):
        save_source(bad, model, {**pairs, "normalized": {1: extra}})
    with pytest.raises(InputError, match="jsae_randomized pair of layer 1 needs its randomized"):
        save_source(bad, model, {"jsae_randomized": {1: pairs["jsae"][1]}})
    assert not bad.exists()

    manifest = json.loads((tmp_path / "source.json").read_text())
    del manifest["pair_kinds"]
    (tmp_path / "source.json").write_text(json.dumps(manifest))
    with pytest.raises(SourceError, match="kind 'normalized'.*declare others under 'pair_kinds'"):
        load_source(tmp_path)
    manifest["pair_kinds"] = {"labels": {"normalized": "N"}, "compared": [["normalized", "x"]]}
    (tmp_path / "source.json").write_text(json.dumps(manifest))
    with pytest.raises(SourceError, match="pair_kinds: Compared kinds"):
        load_source(tmp_path)
    manifest["pair_kinds"] = ["normalized"]
    (tmp_path / "source.json").write_text(json.dumps(manifest))
    with pytest.raises(SourceError, match="'pair_kinds' must look like"):
        load_source(tmp_path)


def test_wandb_path_downloads_then_reads_the_folder(tmp_path, monkeypatch):
    model = tiny_model()
    pair = tiny_pair(model, layer=1)
    _write_research_folder(tmp_path / "made", pair)
    artifact = fake_wandb.FakeArtifact(fake_wandb.folder_files(tmp_path / "made"))
    fake_wandb.install(monkeypatch, {"me/jsae/pair_l1:v0": artifact})
    source = load_source("me/jsae/pair_l1:v0", model=model, cache_dir=tmp_path)
    _same_pair(pair, source.pair(1))
    load_source("me/jsae/pair_l1:v0", model=model, cache_dir=tmp_path)
    assert artifact.downloads == 1, "the second load uses the cache"


def test_wandb_failure_is_one_clear_error(tmp_path):
    with mock.patch("wandb.Api") as api:
        api.return_value.artifact.side_effect = ValueError("project not found")
        with pytest.raises(
            SourceError, match="Could not download the W&B artifact .*project not found"
        ):
            load_source("me/jsae/missing:v3", cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            {"normalize_activations": "expected_average_only_in"},
            UnsupportedError,
            "normalize_activations",
        ),
        ({"activation_fn_str": "relu"}, UnsupportedError, "TopK pairs only"),
        ({"is_pair": False}, UnsupportedError, "single SAE"),
        (
            {"hook_name": "blocks.0.hook_resid_pre"},
            InputError,
            "must read 'blocks.0.ln2.hook_normalized'",
        ),
        ({"activation_fn_kwargs": {}}, SourceError, "activation_fn_kwargs.k"),
    ],
)
def test_unsupported_research_settings_are_refused(tmp_path, change, error, message):
    _write_research_folder(tmp_path, tiny_pair(tiny_model(), layer=0), **change)
    with pytest.raises(error, match=message):
        load_research_pair(tmp_path)


def test_missing_and_corrupt_files(tmp_path):
    model = tiny_model()
    pair = tiny_pair(model, layer=0)
    save_research_pair(pair, tmp_path, model_name="tiny")
    (tmp_path / RESEARCH_WEIGHTS).write_bytes(b"not a safetensors file")
    with pytest.raises(SourceError, match="corrupt"):
        load_research_pair(tmp_path)
    (tmp_path / RESEARCH_CFG).write_text("{ not json")
    with pytest.raises(SourceError, match="corrupt"):
        load_research_pair(tmp_path)
    (tmp_path / RESEARCH_CFG).unlink()
    with pytest.raises(SourceError, match="not a pair folder"):
        load_source(tmp_path, model=model)
    save_research_pair(pair, tmp_path / "p", model_name="tiny")
    weights = load_file(tmp_path / "p" / RESEARCH_WEIGHTS)
    del weights["_b_dec_out"]
    save_file(weights, tmp_path / "p" / RESEARCH_WEIGHTS)
    with pytest.raises(SourceError, match="lacks the weight _b_dec_out"):
        load_research_pair(tmp_path / "p")


def test_wrong_width_and_unknown_sources():
    with pytest.raises(SourceError, match="not a folder on this machine, nor a W&B"):
        load_source("/no/such/folder")
    with pytest.raises(InputError, match="No source given"):
        load_source("   ")


def test_pair_for_another_model_is_refused(tmp_path):
    small = tiny_model(d_model=8, d_mlp=16)
    _write_research_folder(tmp_path, tiny_pair(tiny_model(), layer=0))
    with pytest.raises(InputError, match="d_in=16, but the model's d_model is 8"):
        load_source(tmp_path, model=small)


def test_unknown_model_name_is_one_clear_error(tmp_path):
    # "tiny" is no TransformerLens model name, so this fails before any network access.
    _write_research_folder(tmp_path, tiny_pair(tiny_model(), layer=0))
    with pytest.raises(SourceError, match="Could not load the model 'tiny'.*local model folder"):
        load_source(tmp_path)


def test_demo_dir_is_the_packaged_assets_folder():
    from pathlib import Path

    import jsae
    from jsae.loading import DEMO_DIR

    assert Path(jsae.__file__).parent / "assets" / "demo" == DEMO_DIR
