"""The paper's Pythia-70m pairs, offline: the W&B artifact the research notebook loads
(``lucyfarnik/jsaes_pythia70m1/sae_pythia-70m-deduped_blocks.3.ln2.hook_normalized_16384:v0``)
rebuilt in its exact layout and served by the offline ``wandb`` stand-in, then run with the
README's command. Only the sizes are the tests' (a tiny model's d_model instead of 512).

The layout, from the research code at the commit that trained it (``7fb01ec``, 2024-12-18:
``train_jacobian_sae.py`` with ``--wandb-project jsaes_pythia70m1``): ``save_checkpoint``
puts two files in the ``model`` artifact, ``sae_weights.safetensors`` (``TrainingSAEPair``'s
state dict: ``_W_enc``, ``_b_enc``, ``_W_dec``, ``_b_dec``, the same with ``_out``, and its
MLP copy ``mlp.W_in`` ...) and ``cfg.json`` (``LanguageModelSAERunnerConfig.to_dict()``:
every field of the config in declaration order, then ``tokens_per_buffer``). The reference
for the loaded pair is the research code's TopK encode, computed here from the file's own
tensors at the hook the cfg names."""

import json
import math
import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from jsae.cli import main
from jsae.loading import load_source, save_model_folder
from jsae.provenance import read_provenance
from tests import fake_wandb
from tests.helpers import tiny_model, tiny_pair

ARTIFACT = (
    "lucyfarnik/jsaes_pythia70m1/sae_pythia-70m-deduped_blocks.{layer}.ln2.hook_normalized_16384:v0"
)
PROMPT = "Given the existence as uttered forth in the public works of Puncher and Wattmann"


def runner_cfg(layer: int, d_in: int) -> dict:
    """``LanguageModelSAERunnerConfig.__dict__`` as ``train_jacobian_sae.py`` (7fb01ec) fills
    it for Pythia-70m: defaults, the script's values, and ``__post_init__``'s."""
    batch, context, tokens = 4096, 1024, 300_000_000
    steps = math.ceil(tokens / batch)
    d_sae = d_in * 32
    return {
        "model_name": "pythia-70m-deduped",
        "model_class_name": "HookedTransformer",
        "hook_name": f"blocks.{layer}.ln2.hook_normalized",
        "hook_eval": "NOT_IN_USE",
        "hook_layer": layer,
        "hook_head_index": None,
        "dataset_path": "apollo-research/monology-pile-uncopyrighted-tokenizer-EleutherAI-gpt-neox-20b",
        "dataset_trust_remote_code": True,
        "streaming": True,
        "is_dataset_tokenized": True,
        "context_size": context,
        "use_cached_activations": False,
        "cached_activations_path": None,
        "architecture": "standard",
        "d_in": d_in,
        "d_sae": d_sae,
        "b_dec_init_method": "zeros",
        "expansion_factor": 32,
        "activation_fn": "topk",
        "activation_fn_kwargs": {"k": 32},
        "normalize_sae_decoder": True,
        "noise_scale": 0.0,
        "from_pretrained_path": None,
        "apply_b_dec_to_input": False,
        "decoder_orthogonal_init": False,
        "decoder_heuristic_init": False,
        "init_encoder_as_decoder_transpose": True,
        "n_batches_in_buffer": 64,
        "training_tokens": steps * batch,
        "finetuning_tokens": 0,
        "store_batch_size_prompts": 16,
        "train_batch_size_tokens": batch,
        "normalize_activations": "none",
        "seqpos_slice": [None],
        "device": "cuda",
        "act_store_device": "cuda",
        "seed": 42,
        "dtype": "float32",
        "prepend_bos": True,
        "autocast": True,
        "autocast_lm": True,
        "compile_llm": False,
        "llm_compilation_mode": None,
        "compile_sae": False,
        "sae_compilation_mode": None,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "mse_loss_normalization": None,
        "l1_coefficient": 0,
        "lp_norm": 1,
        "scale_sparsity_penalty_by_decoder_norm": False,
        "l1_warm_up_steps": 0,
        "use_jacobian_loss": True,
        "jacobian_coefficient": 1.0,
        "jacobian_warm_up_steps": steps // 20,
        "mlp_out_mse_coefficient": 1.0,
        "lr": 5e-4,
        "lr_scheduler_name": "constant",
        "lr_warm_up_steps": steps // 100,
        "lr_end": 5e-5,
        "lr_decay_steps": steps // 5,
        "n_restart_cycles": 1,
        "finetuning_method": None,
        "use_ghost_grads": False,
        "feature_sampling_window": 1000,
        "dead_feature_window": 1000,
        "dead_feature_threshold": 1e-6,
        "n_eval_batches": 10,
        "eval_batch_size_prompts": None,
        "log_to_wandb": True,
        "log_activations_store_to_wandb": False,
        "log_optimizer_state_to_wandb": False,
        "wandb_project": "jsaes_pythia70m1",
        "wandb_id": None,
        "run_name": f"Layer-{layer}-{d_sae}-Jac-1.0e+00-LR-5.0e-04-Tokens-{steps * batch:.1e}",
        "wandb_entity": None,
        "wandb_log_frequency": 30,
        "eval_every_n_wandb_logs": 20,
        "resume": False,
        "n_checkpoints": 0,
        "checkpoint_path": "checkpoints/1x2y3z4w",
        "verbose": True,
        "model_kwargs": {},
        "model_from_pretrained_kwargs": {"center_writing_weights": False},
        "tokens_per_buffer": batch * context * 64,
    }


def artifact_files(model, layer: int, tmp_path) -> dict[str, bytes]:
    """The artifact's two files, for ``model`` (a stand-in for Pythia-70m)."""
    d_in = model.cfg.d_model
    pair = tiny_pair(model, layer, d_sae=d_in * 32, k=32)
    weights = {}
    for suffix, sae in (("", pair.sae_in), ("_out", pair.sae_out)):
        for key in ("W_enc", "b_enc", "W_dec", "b_dec"):
            weights[f"_{key}{suffix}"] = getattr(sae, key).detach().clone().contiguous()
    mlp = model.blocks[layer].mlp
    for key in ("W_in", "b_in", "W_out", "b_out"):
        weights[f"mlp.{key}"] = getattr(mlp, key).detach().clone().contiguous()
    save_file(weights, tmp_path / "sae_weights.safetensors")
    return {
        "sae_weights.safetensors": (tmp_path / "sae_weights.safetensors").read_bytes(),
        "cfg.json": json.dumps(runner_cfg(layer, d_in)).encode(),
    }


@pytest.fixture
def paper(tmp_path, monkeypatch):
    """Pythia-70m's stand-in (6 layers, folded as from_pretrained folds it) as a model folder,
    and the layer-3 artifact served offline."""
    model = tiny_model(n_layers=6, folded=True)
    files = artifact_files(model, 3, tmp_path)
    artifact = fake_wandb.FakeArtifact(files)
    fake_wandb.install(monkeypatch, {ARTIFACT.format(layer=3): artifact})
    monkeypatch.setenv("JSAE_CACHE", str(tmp_path / "cache"))
    return model, save_model_folder(model, tmp_path / "pythia"), files, artifact


def test_the_paper_artifact_loads_as_the_research_code_reads_it(paper):
    model, _, files, _ = paper
    source = load_source(ARTIFACT.format(layer=3), model=model)
    assert source.info["cfg"]["model_name"] == "pythia-70m-deduped"  # what it loads by default
    pair = source.pair(3)
    assert (pair.kind, pair.k_in, pair.k_out, pair.d_sae_in) == ("jsae", 32, 32, 16 * 32)
    assert (pair.hook_in, pair.hook_out) == (
        "blocks.3.ln2.hook_normalized",
        "blocks.3.hook_mlp_out",
    )
    tensors = load_bytes(files["sae_weights.safetensors"])
    _, cache = model.run_with_cache(PROMPT)
    for suffix, hook, sae in (
        ("", "blocks.3.ln2.hook_normalized", pair.sae_in),
        ("_out", "blocks.3.hook_mlp_out", pair.sae_out),
    ):
        x = cache[hook][0]  # apply_b_dec_to_input is False: no b_dec subtracted
        pre = x @ tensors[f"_W_enc{suffix}"] + tensors[f"_b_enc{suffix}"]
        top = torch.topk(pre, 32, dim=-1)
        expected = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        torch.testing.assert_close(sae.encode(x), expected)


def readme_command() -> list[str]:
    """The command of the README's "The paper's pairs" section, as arguments of ``jsae``."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## The paper's pairs") :]
    block = section[
        section.index("```bash") + len("```bash") : section.index(
            "```", section.index("```bash") + 7
        )
    ]
    words = shlex.split(block.replace("\\\n", " "))
    assert words[0] == "jsae"
    return words[1:]


def test_the_readme_command_runs_the_notebook_experiment(paper, tmp_path, capsys, monkeypatch):
    _, model_folder, _, artifact = paper
    argv = readme_command()
    assert argv[argv.index("--source") + 1] == ARTIFACT.format(layer=3)
    monkeypatch.chdir(tmp_path)
    (tmp_path / argv[argv.index("--prompt-file") + 1]).write_text(PROMPT)
    offline = [*argv, "--model", str(model_folder), "--bootstrap", "0", "--no-progress"]
    assert main(offline) == 0  # --model: the tests cannot reach the hub for pythia-70m-deduped
    out = capsys.readouterr().out
    assert "layer 3 · jsae pair · mode unit (s = 1) · ε = 0.01" in out
    assert "(k_out 32 × k_in 32 per token)" in out
    written = tmp_path / argv[argv.index("--output") + 1]
    assert read_provenance(written).source == ARTIFACT.format(layer=3)
    assert main(offline) == 0 and artifact.downloads == 1  # the second run reads the cache
