"""Pair folders written the way the research code writes them (``jacobian_saes`` at the
authors' last commit): the training runner's cfg.json, underscore weight names with the MLP
copy beside them, ``sparsity.safetensors``, and for the randomized-LLM control the whole
randomized model as ``randomized_llm_weights.safetensors``, loaded into an unprocessed model."""

import json
from unittest import mock

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file
from transformer_lens import HookedTransformer

from jsae.ablation import ablate
from jsae.cli import main
from jsae.errors import SourceError, UnsupportedError
from jsae.loading import (
    RESEARCH_CFG,
    RESEARCH_WEIGHTS,
    load_research_pair,
    load_source,
    save_model_folder,
    save_source,
)
from jsae.pair import KIND_LABELS, PAIR_KINDS
from tests.helpers import tiny_model, tiny_pair

PROMPT = "Alice: hi! Bob: hello, Alice."


def runner_cfg(pair, **changes) -> dict:
    """cfg.json as the research training runner writes it (LanguageModelSAERunnerConfig's
    to_dict, the keys that matter here plus a few it always has)."""
    cfg = {
        "model_name": "pythia-70m-deduped",
        "randomize_llm_weights": False,
        "model_class_name": "HookedTransformer",
        "hook_name": pair.hook_in,
        "hook_eval": "NOT_IN_USE",
        "hook_layer": pair.layer,
        "hook_head_index": None,
        "context_size": 2048,
        "architecture": "standard",
        "d_in": pair.sae_in.cfg.d_in,
        "d_sae": pair.d_sae_in,
        "b_dec_init_method": "zeros",
        "expansion_factor": 32,
        "activation_fn": "topk",
        "activation_fn_kwargs": {"k": pair.k_in},
        "normalize_sae_decoder": True,
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "seqpos_slice": [None],
        "device": "cuda",
        "dtype": "float32",
        "prepend_bos": True,
        "l1_coefficient": 0,
        "use_jacobian_loss": True,
        "sparsity_metric": "l1",
        "jacobian_coefficient": 0.5,
        "mlp_out_mse_coefficient": 1.0,
        "model_from_pretrained_kwargs": {"center_writing_weights": False},
        "tokens_per_buffer": 4096 * 2048 * 32,
    }
    cfg.update(changes)
    return cfg


def write_research_pair(path, pair, model, randomized=None, **cfg_changes):
    """A checkpoint folder as sae_training_runner.save_checkpoint leaves it."""
    path.mkdir(parents=True, exist_ok=True)
    weights = {}
    for suffix, sae in (("", pair.sae_in), ("_out", pair.sae_out)):
        for key in ("W_enc", "b_enc", "W_dec", "b_dec"):
            weights[f"_{key}{suffix}"] = getattr(sae, key).detach().clone().contiguous()
    mlp = model.blocks[pair.layer].mlp  # TrainingSAEPair's copy of the MLP rides along
    for key in ("W_in", "b_in", "W_out", "b_out"):
        weights[f"mlp.{key}"] = getattr(mlp, key).detach().clone().contiguous()
    save_file(weights, path / RESEARCH_WEIGHTS)
    save_file({"sparsity": torch.zeros(pair.d_sae_in)}, path / "sparsity.safetensors")
    cfg = runner_cfg(pair, randomize_llm_weights=randomized is not None, **cfg_changes)
    (path / RESEARCH_CFG).write_text(json.dumps(cfg))
    if randomized is not None:
        state = {k: v.detach().clone().contiguous() for k, v in randomized.state_dict().items()}
        save_file(state, path / "randomized_llm_weights.safetensors")
    return path


def randomize(model: HookedTransformer, seed: int = 7) -> HookedTransformer:
    """The research code's randomization: every weight matrix (W_*) re-drawn, biases and
    LayerNorm weights kept (TransformerLens's init_weights on an unprocessed model)."""
    out = tiny_model()
    out.load_state_dict(model.state_dict())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in out.named_parameters():
            if "W_" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=generator))
    return out


def test_runner_cfg_is_read_with_the_research_defaults(tmp_path):
    model = tiny_model()
    pair = tiny_pair(model, layer=1, apply_b_dec_to_input=True)
    write_research_pair(tmp_path / "a", pair, model)
    loaded, cfg = load_research_pair(tmp_path / "a")
    assert loaded.kind == "jsae" and loaded.k_in == pair.k_in  # activation_fn: topk, k read
    assert loaded.sae_in.cfg.apply_b_dec_to_input is False  # as written
    # a missing apply_b_dec_to_input means True to the research loader, and here
    cfg = runner_cfg(pair)
    del cfg["apply_b_dec_to_input"]
    (tmp_path / "a" / RESEARCH_CFG).write_text(json.dumps(cfg))
    loaded, _ = load_research_pair(tmp_path / "a")
    assert loaded.sae_in.cfg.apply_b_dec_to_input is True
    assert loaded.sae_out.cfg.apply_b_dec_to_input is True
    # λ = 0 is the paper's "traditional SAE" pair
    write_research_pair(tmp_path / "b", pair, model, jacobian_coefficient=0.0)
    assert load_research_pair(tmp_path / "b")[0].kind == "plain"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"use_jacobian_loss": False}, "single SAE"),
        ({"activation_fn": "relu"}, "TopK pairs only"),
        ({"architecture": "gated"}, "architecture 'gated'"),
        ({"hook_head_index": 4}, "attention head"),
    ],
)
def test_runner_cfgs_jsae_cannot_run_are_refused(tmp_path, changes, message):
    model = tiny_model()
    write_research_pair(tmp_path, tiny_pair(model, layer=0), model, **changes)
    with pytest.raises(UnsupportedError, match=message):
        load_research_pair(tmp_path)


def test_missing_activation_key_means_relu_as_in_the_research_loader(tmp_path):
    model = tiny_model()
    pair = tiny_pair(model, layer=0)
    write_research_pair(tmp_path, pair, model)
    cfg = runner_cfg(pair)
    del cfg["activation_fn"]
    (tmp_path / RESEARCH_CFG).write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedError, match="'relu'"):
        load_research_pair(tmp_path)


def test_cfg_widths_must_match_the_weights(tmp_path):
    model = tiny_model()
    write_research_pair(tmp_path, tiny_pair(model, layer=0, d_sae=64), model, d_sae=128)
    with pytest.raises(SourceError, match="d_sae=64, but cfg.json says 128"):
        load_research_pair(tmp_path)


def test_randomized_pair_with_a_model_folder_reads_the_randomized_model(tmp_path):
    """``--model FOLDER``: the unprocessed model, then the randomized weights, strictly; the
    sparsity file beside them is no obstacle."""
    base = tiny_model()  # unprocessed: LayerNorm with gain and bias, not folded
    randomized = randomize(base)
    pair = tiny_pair(base, layer=1)
    folder = write_research_pair(tmp_path / "pair", pair, base, randomized=randomized)
    save_model_folder(base, tmp_path / "model")
    source = load_source(folder, model=str(tmp_path / "model"))
    assert source.kinds == ["jsae_randomized"]
    for name, value in randomized.state_dict().items():
        torch.testing.assert_close(source.model.state_dict()[name], value, msg=name)
    expected = ablate(randomized, pair, PROMPT).table
    got = ablate(source.model_for(1, "jsae_randomized"), source.pair(1, "jsae_randomized"), PROMPT)
    pd.testing.assert_frame_equal(got.table, expected)
    assert not expected.equals(ablate(base, pair, PROMPT).table), "randomization must matter"
    # the CLI takes the same path
    out = tmp_path / "out.csv"
    code = main(
        ["ablate", "--source", str(folder), "--model", str(tmp_path / "model"),
         "--pair", "jsae_randomized", "--prompt", PROMPT, "--output", str(out), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    written = pd.read_csv(out)
    assert written["diff"].to_numpy() == pytest.approx(expected["diff"].to_numpy(), abs=1e-6)


def test_randomized_pair_by_name_builds_the_model_without_processing(tmp_path):
    """``--model NAME`` (or the cfg's model_name): from_pretrained_no_processing, never the
    folded from_pretrained, and a strict load."""
    base = tiny_model()
    randomized = randomize(base)
    pair = tiny_pair(base, layer=0)
    folder = write_research_pair(tmp_path, pair, base, randomized=randomized)
    with (
        mock.patch.object(
            HookedTransformer, "from_pretrained_no_processing", return_value=tiny_model()
        ) as unprocessed,
        mock.patch.object(HookedTransformer, "from_pretrained") as processed,
    ):
        source = load_source(folder, model="pythia-70m-deduped")
        assert load_source(folder).model is not None  # the cfg's model_name, the same way
    assert unprocessed.call_args_list[0].args[0] == "pythia-70m-deduped"
    processed.assert_not_called()
    torch.testing.assert_close(source.model.blocks[0].mlp.W_in, randomized.blocks[0].mlp.W_in)


def test_randomized_weights_into_a_folded_model_are_refused(tmp_path):
    """What went wrong before: a folded model silently dropped the LayerNorm weights."""
    base = tiny_model()
    folder = write_research_pair(
        tmp_path, tiny_pair(base, layer=0), base, randomized=randomize(base)
    )
    folded = tiny_model(folded=True)
    with pytest.raises(SourceError, match="does not fit the model: missing .*unexpected .*ln"):
        load_source(folder, model=folded)


def test_randomized_pair_without_its_weights_file_is_one_clear_error(tmp_path):
    base = tiny_model()
    folder = write_research_pair(
        tmp_path, tiny_pair(base, layer=0), base, randomized=randomize(base)
    )
    (folder / "randomized_llm_weights.safetensors").unlink()
    with pytest.raises(SourceError, match="randomized_llm_weights.safetensors; it does not"):
        load_source(folder, model=base)


def test_source_folder_with_all_four_kinds(tmp_path):
    """JSAE, plain and both randomized-LLM controls in one source: each pair reads its own
    model, the controls a randomized copy, and the given model object stays untouched."""
    base = tiny_model()
    randomized = randomize(base)
    pairs = {kind: {1: tiny_pair(base, 1, kind=kind)} for kind in PAIR_KINDS}
    controls = {(kind, 1): randomized for kind in PAIR_KINDS if kind.endswith("_randomized")}
    save_source(tmp_path, base, pairs, pair_models=controls)
    source = load_source(tmp_path)
    assert source.kinds == list(PAIR_KINDS)
    assert [KIND_LABELS[k] for k in source.kinds] == [
        "JSAEs",
        "Traditional SAEs",
        "JSAEs (Randomized LLM)",
        "Traditional SAEs (Randomized LLM)",
    ]
    for kind in PAIR_KINDS:
        reads = source.model_for(1, kind)
        expected = randomized if kind.endswith("_randomized") else base
        torch.testing.assert_close(reads.blocks[1].mlp.W_in, expected.blocks[1].mlp.W_in)
    assert source.pair_models[("jsae_randomized", 1)] is not source.model
    with pytest.raises(SourceError, match="list it under 'jsae_randomized'"):
        manifest = json.loads((tmp_path / "source.json").read_text())
        manifest["pairs"]["jsae"] = manifest["pairs"]["jsae_randomized"]
        (tmp_path / "source.json").write_text(json.dumps(manifest))
        load_source(tmp_path)
