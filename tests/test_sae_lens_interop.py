"""sae-lens both ways: ``jsae export-sae-lens`` writes folders that sae-lens itself opens
(``SAE.load_from_disk``) with the hooks a sae-lens user attaches them to, encoding what
jsae's pair encodes; and a folder of two sae-lens SAEs loads without ``pair.json`` when
their metadata name the model and the hooks. The references are sae-lens's own loader and
``encode``, fed from TransformerLens's ``run_with_cache`` at the SAEs' recorded hooks."""

import json
import shutil

import pandas as pd
import pytest
import torch
from sae_lens import SAE, TopKSAE

import jsae
from jsae.ablation import ablate
from jsae.cli import main
from jsae.errors import SourceError
from jsae.loading import load_source, save_source
from jsae.pair import topk_encode
from tests.helpers import tiny_model, tiny_pair

PROMPT = "Alice: hi! Bob: hello, Alice."


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    """A source folder whose model is folded, as ``from_pretrained`` folds Pythia: there
    ``blocks.L.ln2.hook_normalized`` is the MLP input, the hook the input SAE names."""
    model = tiny_model(folded=True)
    pairs = {"jsae": {1: tiny_pair(model, 1, k=6)}, "plain": {1: tiny_pair(model, 1, k=6)}}
    return save_source(tmp_path_factory.mktemp("src"), model, pairs)


def dense(acts: torch.Tensor, idx: torch.Tensor, d_sae: int) -> torch.Tensor:
    return torch.zeros(*acts.shape[:-1], d_sae).scatter(-1, idx, acts)


def test_export_opens_in_sae_lens_with_the_right_hooks_and_encodes_as_jsae(source_dir, tmp_path):
    out = tmp_path / "export"
    assert (
        main(["export-sae-lens", "--source", str(source_dir), "--layer", "1", "--output", str(out)])
        == 0
    )
    source = load_source(source_dir)
    pair, model = source.pair(1), source.model
    sae_in, sae_out = SAE.load_from_disk(out / "in"), SAE.load_from_disk(out / "out")
    assert isinstance(sae_in, TopKSAE) and isinstance(sae_out, TopKSAE)
    assert sae_in.cfg.metadata.hook_name == "blocks.1.ln2.hook_normalized"
    assert sae_out.cfg.metadata.hook_name == "blocks.1.hook_mlp_out"
    assert sae_in.cfg.metadata.model_name == str((source_dir / "model").resolve())
    assert sae_out.cfg.metadata.model_name == sae_in.cfg.metadata.model_name
    _, cache = model.run_with_cache(PROMPT)
    for ours, theirs in ((pair.sae_in, sae_in), (pair.sae_out, sae_out)):
        acts = cache[theirs.cfg.metadata.hook_name][0]
        expected = dense(*topk_encode(ours, acts), ours.cfg.d_sae)
        torch.testing.assert_close(theirs.encode(acts), expected, rtol=1e-6, atol=1e-6)
    # the exported folder reads back into jsae as the same pair
    back = load_source(out)
    assert back.pair(1).kind == "jsae"
    pd.testing.assert_frame_equal(
        ablate(model, pair, PROMPT).table, ablate(back.model, back.pair(1), PROMPT).table
    )


def test_two_sae_lens_saes_load_without_pair_json(source_dir, tmp_path):
    out = tmp_path / "export"
    assert (
        main(
            [
                "export-sae-lens",
                "--source",
                str(source_dir),
                "--pair",
                "plain",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    (out / "pair.json").unlink()
    loaded = load_source(out)  # no --model: the SAEs' metadata name it
    assert loaded.layers() == [1]
    original = load_source(source_dir)
    pd.testing.assert_frame_equal(
        ablate(original.model, original.pair(1, "plain"), PROMPT).table,
        ablate(loaded.model, loaded.pair(1), PROMPT).table,
    )


def test_without_pair_json_the_hooks_must_name_one_block(source_dir, tmp_path):
    out = tmp_path / "export"
    assert main(["export-sae-lens", "--source", str(source_dir), "--output", str(out)]) == 0
    (out / "pair.json").unlink()
    cfg = json.loads((out / "out" / "cfg.json").read_text())
    cfg["metadata"]["hook_name"] = "blocks.0.hook_mlp_out"
    (out / "out" / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(SourceError, match="hook names must say the layer"):
        load_source(out)


def test_export_refuses_a_folder_that_holds_a_pair(source_dir, tmp_path, capsys):
    out = tmp_path / "export"
    (out / "in").mkdir(parents=True)
    assert main(["export-sae-lens", "--source", str(source_dir), "--output", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_the_library_names_are_exported_from_jsae(source_dir, tmp_path):
    assert {"save_sae_lens_pair", "load_source"} <= set(jsae.__all__)
    source = jsae.load_source(source_dir)
    jsae.save_sae_lens_pair(source.pair(1), tmp_path / "p", model_name="pythia-70m-deduped")
    assert SAE.load_from_disk(tmp_path / "p" / "in").cfg.metadata.model_name == (
        "pythia-70m-deduped"
    )
    assert source.pair(1).sae_in.cfg.metadata.model_name == "model"  # left as it was
    shutil.rmtree(tmp_path / "p")


def test_export_of_a_kind_the_source_lacks_names_the_kinds_it_has(source_dir, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export-sae-lens", "--source", str(source_dir), "--pair", "nope",
                 "--output", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "has no nope pairs; it has: jsae, plain" in err and "Traceback" not in err
