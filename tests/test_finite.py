"""NaN and infinity: refused in weights at load (naming the tensor), and stopping a run when
they appear in its activations."""

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from jsae.ablation import AblationConfig, ablate
from jsae.cli import main
from jsae.errors import NumericError, SourceError
from jsae.loading import load_source, save_sae_lens_pair, save_source
from jsae.pair import JSAEPair
from tests.helpers import tiny_model, tiny_pair

PROMPT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def source_dir(tmp_path):
    model = tiny_model()
    return save_source(tmp_path / "src", model, {"jsae": {1: tiny_pair(model, 1)}})


def poison(path, key, value=math.nan, index=(0, 0)):
    tensors = load_file(path)
    tensors[key][index] = value
    save_file(tensors, path)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_research_pair_with_non_finite_weights_is_refused(source_dir, capsys, value):
    weights = source_dir / "pairs/jsae/layer_1/sae_weights.safetensors"
    poison(weights, "_W_enc")
    with pytest.raises(SourceError, match=r"the tensor '_W_enc' holds 1 NaN or infinite"):
        load_source(source_dir)
    assert main(["ablate", "--source", str(source_dir), "--prompt", PROMPT]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {weights}: the tensor '_W_enc'") and "Traceback" not in err


def test_model_folder_with_non_finite_weights_is_refused(source_dir):
    weights = source_dir / "model/model.safetensors"
    poison(weights, "blocks.0.mlp.W_in", math.inf, index=(3, 5))
    with pytest.raises(SourceError, match=r"model.safetensors: the tensor 'blocks.0.mlp.W_in'"):
        load_source(source_dir)


def test_sae_lens_pair_with_non_finite_weights_is_refused(tmp_path):
    model = tiny_model()
    folder = save_sae_lens_pair(tiny_pair(model, 1), tmp_path / "pair")
    poison(folder / "out" / "sae_weights.safetensors", "b_enc", index=(7,))
    with pytest.raises(SourceError, match=r"out: The output SAE: the tensor 'b_enc' holds 1 NaN"):
        load_source(folder, model=model)


def test_a_pair_built_in_memory_checks_its_weights():
    model = tiny_model()
    pair = tiny_pair(model, 1)
    with torch.no_grad():
        pair.sae_in.W_dec[2, 3] = math.nan
    with pytest.raises(SourceError, match="The input SAE: the tensor 'W_dec' holds 1 NaN"):
        JSAEPair(pair.sae_in, pair.sae_out, layer=1)


def test_non_finite_activations_stop_the_run():
    model = tiny_model()
    pair = tiny_pair(model, 1)
    # a scale float32 holds, but -s·J overflows it
    with pytest.raises(NumericError, match="NaN or infinite values appeared in the"):
        ablate(model, pair, PROMPT, config=AblationConfig(mode="scale", scale=3e38))
    with torch.no_grad():  # a model gone bad after loading: its MLP input is NaN
        model.blocks[1].ln2.w[0] = math.nan
    with pytest.raises(NumericError, match=r"appeared in the MLP input at positions 1\.\."):
        ablate(model, pair, PROMPT)


def test_the_cli_reports_an_overflowing_run_in_one_line(source_dir, capsys):
    args = ["ablate", "--source", str(source_dir), "--prompt", PROMPT, "--no-progress"]
    assert main([*args, "--scale", "3e38"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: NaN or infinite values appeared") and "Traceback" not in err
