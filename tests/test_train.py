"""Training pairs (jsae.train) and the bundle build (jsae.demo) on micro settings."""

from __future__ import annotations

import json

import pytest
import torch

from jsae.ablation import ablate
from jsae.demo import HELDOUT_FILE, METRICS_FILE, build_demo, check_targets, measure_bundle
from jsae.errors import InputError, UnsupportedError
from jsae.loading import load_source
from jsae.pair import hook_in_name, hook_out_name
from jsae.prompts import DEFAULT_PROMPTS
from jsae.sandwich import MLPWeights, Sandwich
from jsae.train import (
    PairTrainingConfig,
    chunk_token_ids,
    latest_checkpoint,
    new_pair,
    pair_loss,
    tokenize_documents,
    train_pair,
)
from tests.helpers import TEXT, tiny_model


def micro_config(**overrides) -> PairTrainingConfig:
    settings = dict(
        layer=1,
        d_sae=64,
        k=4,
        lr=3e-3,
        batch_tokens=128,
        steps=40,
        seed=0,
        context_size=32,
        model_batch_size=4,
        block_sequences=8,
        warmup_steps=5,
        dead_window_tokens=1000,
        log_every=5,
    )
    settings.update(overrides)
    return PairTrainingConfig(**settings)


@pytest.fixture(scope="module")
def model():
    # LayerNorm folded, so that ln2.hook_normalized is the MLP's input (see check_folded_norm)
    return tiny_model(normalization_type="LNPre")


@pytest.fixture(scope="module")
def tokens():
    generator = torch.Generator().manual_seed(1)
    body = torch.randint(1, 300, (24 * 31,), generator=generator)
    return chunk_token_ids(body, 32, bos=0)


def activations(model, tokens, layer):
    hooks = [hook_in_name(layer), hook_out_name(layer)]
    _, cache = model.run_with_cache(tokens, names_filter=hooks, stop_at_layer=layer + 1)
    d = model.cfg.d_model
    return cache[hooks[0]][:, 1:].reshape(-1, d), cache[hooks[1]][:, 1:].reshape(-1, d)


def test_tokenize_documents_rows_start_with_bos(model):
    rows = tokenize_documents(model, [TEXT] * 5, context_size=16)
    bos = model.tokenizer.bos_token_id
    assert rows.shape[1] == 16 and len(rows) > 2
    assert (rows[:, 0] == bos).all()
    assert (rows[:, 1:] == bos).any(), "documents are separated by BOS"


def test_penalty_is_the_packages_jacobian(model, tokens):
    """The training penalty is mean |J| of jsae.sandwich's Jacobian, with gradients into
    the input decoder and the output encoder only through the Jacobian path."""
    config = micro_config()
    pair = new_pair(model, config)
    x, y = activations(model, tokens[:4], config.layer)
    with torch.no_grad():
        reference = Sandwich(model, pair)(x)
    torch.testing.assert_close(reference.mlp_out, y, rtol=1e-4, atol=1e-5)
    mlp = MLPWeights.from_model(model, config.layer)
    # the sandwich's own MLP output, so that both pick the same top k output features
    loss = pair_loss(pair, mlp, x, reference.mlp_out, 1.0, 1.0, jacobian_coefficient=1.0)
    assert torch.equal(loss.in_idx, reference.in_idx)
    assert torch.equal(loss.out_idx, reference.out_idx)
    expected = reference.jacobian.abs().mean()
    torch.testing.assert_close(loss.jacobian_penalty, expected, rtol=1e-5, atol=1e-7)
    loss.jacobian_penalty.backward()
    assert pair.sae_in.W_dec.grad.abs().sum() > 0
    assert pair.sae_out.W_enc.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters()), "the model stays frozen"


def test_jacobian_penalty_sparsifies_relative_to_plain(model, tokens):
    """Same data, seed and schedule: λ > 0 ends with a much smaller mean |J| than λ = 0."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    results = {
        lam: train_pair(model, tokens, micro_config(jacobian_coefficient=lam), progress=False)
        for lam in (0.0, 10.0)
    }
    plain, jsae = results[0.0], results[10.0]
    assert plain.pair.kind == "plain" and jsae.pair.kind == "jsae"
    assert plain.step == jsae.step == 40 and plain.tokens_seen == 40 * 128
    x, _ = activations(model, tokens, 1)
    with torch.no_grad():
        mean_j = {
            lam: Sandwich(model, r.pair)(x).jacobian.abs().mean().item()
            for lam, r in results.items()
        }
    assert mean_j[10.0] < 0.7 * mean_j[0.0], mean_j
    # the logged penalty tells the same story
    assert jsae.history[-1]["jacobian_penalty"] < plain.history[-1]["jacobian_penalty"]
    # decoder rows are unit norm after training
    for result in results.values():
        for sae in (result.pair.sae_in, result.pair.sae_out):
            norms = sae.W_dec.norm(dim=-1)
            torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)
    # reconstruction improved from the start for both
    for result in results.values():
        assert result.history[-1]["fvu_in"] < result.history[0]["fvu_in"]
        assert 0.0 <= result.dead_fraction_in <= 1.0 and 0.0 <= result.dead_fraction_out <= 1.0
    # the model was not touched
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_checkpoint_and_resume_match_an_uninterrupted_run(model, tokens, tmp_path):
    config = micro_config(jacobian_coefficient=1.0, steps=12, checkpoint_every=4)
    full = train_pair(model, tokens, config, checkpoint_dir=tmp_path / "a", progress=False)
    assert [p.name for p in full.checkpoints] == [
        "step_000004.pt",
        "step_000008.pt",
        "step_000012.pt",
    ]
    assert latest_checkpoint(tmp_path / "a").name == "step_000012.pt"

    # an interrupted run: resume the checkpoint of step 4 and finish
    state = torch.load(tmp_path / "a" / "step_000004.pt", weights_only=True)
    assert state["step"] == 4
    resumed = train_pair(
        model,
        tokens,
        config,
        resume_from=tmp_path / "a" / "step_000004.pt",
        checkpoint_dir=tmp_path / "b",
        progress=False,
    )
    assert resumed.step == 12
    assert [p.name for p in resumed.checkpoints] == ["step_000008.pt", "step_000012.pt"]
    for a, b in (
        (full.pair.sae_in, resumed.pair.sae_in),
        (full.pair.sae_out, resumed.pair.sae_out),
    ):
        for key, value in a.state_dict().items():
            torch.testing.assert_close(b.state_dict()[key], value, atol=0, rtol=0)
    assert resumed.history == full.history
    assert resumed.dead_fraction_in == full.dead_fraction_in


def test_resume_refuses_other_settings(model, tokens, tmp_path):
    config = micro_config(steps=4, checkpoint_every=4)
    train_pair(model, tokens, config, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match="d_sae"):
        train_pair(model, tokens, micro_config(d_sae=32), resume_from=tmp_path, progress=False)
    # more steps is fine
    longer = train_pair(model, tokens, micro_config(steps=6), resume_from=tmp_path, progress=False)
    assert longer.step == 6


def test_refuses_a_model_whose_layernorm_is_not_folded(tokens):
    with pytest.raises(UnsupportedError, match="fold_ln"):
        train_pair(tiny_model(), tokens, micro_config(steps=1), progress=False)


def test_config_validation():
    with pytest.raises(InputError):
        PairTrainingConfig(layer=0, d_sae=8, k=16)
    with pytest.raises(InputError):
        PairTrainingConfig(layer=0, jacobian_coefficient=-1.0)
    with pytest.raises(InputError):
        PairTrainingConfig(layer=0, batch_tokens=0)
    config = PairTrainingConfig(layer=0, steps=100, warmup_steps=10, decay_fraction=0.2)
    assert config.lr_at(0) == pytest.approx(config.lr / 10)
    assert config.lr_at(50) == pytest.approx(config.lr)
    assert config.lr_at(99) == pytest.approx(config.lr / 20)


def test_wandb_offline_logging_writes_files(model, tokens, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    result = train_pair(model, tokens, micro_config(steps=10), wandb_mode="offline", progress=False)
    assert result.step == 10
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")), "the offline run's log file was written"


def test_quick_build_makes_a_loadable_bundle(tmp_path):
    out = tmp_path / "demo"
    messages: list[str] = []
    metrics = build_demo(out, quick=True, log=messages.append, progress=False)
    assert (out / METRICS_FILE).is_file() and (out / HELDOUT_FILE).is_file()
    assert json.loads((out / METRICS_FILE).read_text()) == json.loads(json.dumps(metrics))
    assert not out.with_name("demo.building").exists()

    source = load_source(out)
    n_layers = source.model.cfg.n_layers
    assert source.kinds == ["jsae", "plain"]
    for kind in ("jsae", "plain"):
        assert source.layers(kind) == list(range(n_layers))
    assert source.model.tokenizer.bos_token == "<|endoftext|>"

    # the held-out split was never trained on, and the metrics recompute exactly
    corpus = metrics["corpus"]
    assert corpus["characters"]["heldout"] > 0 and corpus["tokens"]["sae"] > 0
    again = measure_bundle(source, out / HELDOUT_FILE)
    for kind, by_layer in metrics["measured"]["pairs"].items():
        for layer, stats in by_layer.items():
            for key in ("ev_in", "ev_out", "frac_abs_j_gt_eps", "mean_abs_j"):
                assert again["pairs"][kind][layer][key] == pytest.approx(stats[key], abs=1e-6)
    assert metrics["targets"] == check_targets(metrics["measured"])
    assert isinstance(metrics["all_targets_met"], bool)
    assert metrics["language_model"]["unigram_loss"] > 0

    result = ablate(source.model, source.pair(0, "jsae"), DEFAULT_PROMPTS["Prose"])
    assert len(result.table) == result.n_tokens * 8 * 8
    for kind in ("jsae", "plain"):
        for layer in range(n_layers):
            for sae in (source.pair(layer, kind).sae_in, source.pair(layer, kind).sae_out):
                norms = sae.W_dec.norm(dim=-1)
                torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)
