"""Training pairs (jsae.train) and the bundle build (jsae.demo) on micro settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from jsae.ablation import ablate
from jsae.demo import (
    HELDOUT_FILE,
    METRICS_FILE,
    QUICK,
    build_demo,
    check_targets,
    measure_bundle,
    metrics_table,
)
from jsae.demo.build import pair_config
from jsae.demo.kinds import declared_kinds
from jsae.errors import InputError
from jsae.example_texts import DEFAULT_PROMPTS
from jsae.features import CARDS_DIR, FeatureCards, card_folder_name
from jsae.loading import load_source
from jsae.pair import hook_in_name, hook_out_name, sae_pre_activations, topk_activations
from jsae.sandwich import MLPWeights, Sandwich, jacobian_products
from jsae.train import (
    ActivationStream,
    PairTrainer,
    PairTrainingConfig,
    explained_variance,
    latest_checkpoint,
    new_pair,
    pair_loss,
    tokenize_documents,
    train_pair,
)
from jsae.train.config import BUNDLE_V1
from jsae.train.losses import TERMS
from jsae.train.metrics import TermAverages
from tests.helpers import TEXT, micro_config, random_token_rows, tiny_model
from tests.helpers import hook_activations as activations


@pytest.fixture(scope="module")
def model():
    # LayerNorm folded, so that ln2.hook_normalized is the MLP's input and `activations`
    # below can read it from the model's own hooks, independently of jsae.prompt
    return tiny_model(normalization_type="LNPre")


@pytest.fixture(scope="module")
def tokens():
    return random_token_rows()


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


def test_the_stream_reads_the_mlp_input_of_an_unfolded_model(tokens):
    """LayerNorm with a random gain and bias, not folded (as the research code trains): the
    stream's x is what the MLP receives, so the MLP maps it to the stream's y, which is the
    model's own hook_mlp_out; ln2.hook_normalized (before gain and bias) is not x."""
    model = tiny_model()
    assert model.cfg.normalization_type == "LN"
    stream = ActivationStream(model, tokens[:8], 1, block_sequences=8, model_batch_size=4, seed=0)
    x, y = stream.block(0)
    mlp = MLPWeights.from_model(model, 1)
    torch.testing.assert_close(mlp.out_from_pre(mlp.pre(x)), y, rtol=1e-4, atol=1e-5)
    hooks = [hook_in_name(1), hook_out_name(1)]
    _, cache = model.run_with_cache(tokens[:8], names_filter=hooks)
    d = model.cfg.d_model
    normalized, mlp_out = (cache[h][:, 1:].reshape(-1, d) for h in hooks)
    torch.testing.assert_close(y[y[:, 0].argsort()], mlp_out[mlp_out[:, 0].argsort()])
    assert (x.sort(dim=0).values - normalized.sort(dim=0).values).abs().max() > 0.05
    result = train_pair(model, tokens, micro_config(steps=2), progress=False)
    assert result.step == 2


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
    assert source.kinds == ["jsae", "normalized", "plain"]
    assert source.pair_kinds == declared_kinds(QUICK.kinds)
    for kind in source.kinds:
        assert source.layers(kind) == list(range(n_layers))
        assert (
            metrics["training"][kind]["0"]["objective"]
            == pair_config(QUICK, 0, {r.name: r for r in QUICK.kinds}[kind], 0).objective
        )
    assert source.model.tokenizer.bos_token == "<|endoftext|>"

    # the held-out split was never trained on, and the metrics recompute exactly
    corpus = metrics["corpus"]
    assert corpus["characters"]["heldout"] > 0 and corpus["tokens"]["sae"] > 0
    again = measure_bundle(source, out / HELDOUT_FILE)
    for kind, by_layer in metrics["measured"]["pairs"].items():
        for layer, stats in by_layer.items():
            for key in ("ev_in", "ev_out", "frac_abs_j_gt_eps", "mean_abs_j"):
                assert again["pairs"][kind][layer][key] == pytest.approx(stats[key], abs=1e-6)
    assert metrics["targets"] == check_targets(metrics["measured"], metrics["training"])
    assert isinstance(metrics["all_targets_met"], bool)
    assert metrics["language_model"]["unigram_loss"] > 0

    # every pair's feature cards, built from the held-out sample for these very weights
    assert metrics["cards"]["bytes"] > 0
    for kind in source.kinds:
        for layer in range(n_layers):
            cards = FeatureCards(out / CARDS_DIR / card_folder_name(kind, layer))
            assert cards.built_for(source.pair(layer, kind)), (kind, layer)
            assert cards.meta["tokens_counted"] == again["tokens"]

    result = ablate(source.model, source.pair(0, "jsae"), DEFAULT_PROMPTS["Prose"])
    assert len(result.table) == result.n_tokens * 8 * 8
    for kind in source.kinds:
        for layer in range(n_layers):
            for sae in (source.pair(layer, kind).sae_in, source.pair(layer, kind).sae_out):
                norms = sae.W_dec.norm(dim=-1)
                torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)


def dense_reconstruction(sae, x):
    """sae-lens's own dense path: decode(encode(x))."""
    return sae.decode(sae.encode(x))


def test_topk_activations_is_sae_lens_encode(model, tokens):
    pair = new_pair(model, micro_config())
    x, _ = activations(model, tokens[:2], 1)
    values, indices = topk_activations(sae_pre_activations(pair.sae_in, x), pair.k_in)
    dense = torch.zeros(len(x), pair.d_sae_in).scatter(-1, indices, values)
    torch.testing.assert_close(dense, pair.sae_in.encode(x), rtol=0, atol=0)
    assert (values[:, :-1] >= values[:, 1:]).all(), "largest first"


@pytest.mark.parametrize("objective", ["research", "fvu"])
def test_loss_terms_match_an_independent_computation(model, tokens, objective):
    """Reconstruction errors by sae-lens's dense encode/decode (the research objective's term
    by torch's own F.mse_loss, the fvu objective's divided by the variance), AuxK by a dense
    masked top-k (normalised like the reconstruction term), penalty by the Sandwich; the total
    is their weighted sum and the named terms (FVUs whatever the objective) are the history's.
    The fvu objective is tested with the bundle's first settings (the decoder bias subtracted
    from the input, which the research code does not do)."""
    config = micro_config(**BUNDLE_V1) if objective == "fvu" else micro_config()
    assert config.objective == objective
    pair = new_pair(model, config)
    with torch.no_grad():
        for sae in (pair.sae_in, pair.sae_out):
            sae.b_dec.add_(0.1 * torch.randn_like(sae.b_dec))
    x, y = activations(model, tokens[:4], config.layer)
    mlp = MLPWeights.from_model(model, config.layer)
    generator = torch.Generator().manual_seed(3)
    dead = tuple(torch.rand(config.d_sae, generator=generator) < 0.5 for _ in range(2))
    variances = (2.0, 3.0)
    loss = pair_loss(
        pair,
        mlp,
        x,
        y,
        *variances,
        0.5,
        dead=dead,
        aux_k=6,
        aux_coefficient=0.25,
        objective=config.objective,
    )
    with torch.no_grad():
        expected_aux = 0.0
        fvus, terms = [], []
        for sae, data, mask, variance in zip(
            (pair.sae_in, pair.sae_out), (x, y), dead, variances, strict=True
        ):
            reconstruction = dense_reconstruction(sae, data)
            err = data - reconstruction
            fvus.append((err**2).sum(-1).mean() / variance)
            scale = variance if objective == "fvu" else data.shape[-1]
            terms.append(fvus[-1] if objective == "fvu" else F.mse_loss(reconstruction, data))
            pre = (data - sae.b_dec * sae.cfg.apply_b_dec_to_input) @ sae.W_enc + sae.b_enc
            pre[:, ~mask] = float("-inf")
            top = pre.topk(6, dim=-1)
            code = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
            expected_aux += ((code @ sae.W_dec - err) ** 2).sum(-1).mean() / scale
        penalty = Sandwich(model, pair)(x).jacobian.abs().mean()
    torch.testing.assert_close(loss.fvu_in, fvus[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss.fvu_out, fvus[1], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss.aux, expected_aux, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(loss.jacobian_penalty, penalty, rtol=1e-5, atol=1e-7)
    expected = terms[0] + terms[1] + 0.25 * expected_aux + 0.5 * penalty
    torch.testing.assert_close(loss.total, expected, rtol=1e-5, atol=1e-7)
    assert list(loss.terms()) == list(TERMS)
    assert loss.terms()["loss"] is loss.total
    no_penalty = pair_loss(pair, mlp, x, y, *variances, 0.0, with_penalty=False)
    assert no_penalty.jacobian_penalty is None and "jacobian_penalty" not in no_penalty.terms()


def test_jacobian_products_are_the_weight_products_with_gradients(model):
    pair = new_pair(model, micro_config())
    mlp = MLPWeights.from_model(model, 1)
    dec_in_W_in, enc_out_W_out = jacobian_products(pair, mlp)
    W_dec, W_enc = pair.sae_in.W_dec.double(), pair.sae_out.W_enc.double()
    torch.testing.assert_close(
        dec_in_W_in.double(), torch.einsum("id,dm->im", W_dec, mlp.W_in.double())
    )
    torch.testing.assert_close(
        enc_out_W_out.double(), torch.einsum("md,dj->jm", mlp.W_out.double(), W_enc)
    )
    (dec_in_W_in.sum() + enc_out_W_out.sum()).backward()
    assert pair.sae_in.W_dec.grad is not None and pair.sae_out.W_enc.grad is not None
    sandwich = Sandwich(model, pair)
    assert not sandwich.dec_in_W_in.requires_grad
    torch.testing.assert_close(sandwich.dec_in_W_in, dec_in_W_in.detach(), rtol=0, atol=0)
    torch.testing.assert_close(sandwich.enc_out_W_out, enc_out_W_out.detach(), rtol=0, atol=0)


def test_explained_variance_is_one_minus_the_fvu(model, tokens):
    pair = new_pair(model, micro_config())
    x, _ = activations(model, tokens[:4], 1)
    with torch.no_grad():
        x64 = x.double()
        residual = ((x64 - dense_reconstruction(pair.sae_in, x).double()) ** 2).sum()
        expected = 1 - residual / ((x64 - x64.mean(0)) ** 2).sum()
    assert explained_variance(pair.sae_in, x) == pytest.approx(float(expected), abs=1e-5)


def test_term_averages_and_their_checkpoint_state():
    averages = TermAverages()
    steps = [
        {"loss": 3.0, "fvu_in": 1.0, "fvu_out": 2.0, "aux": 0.0},
        {"loss": 5.0, "fvu_in": 2.0, "fvu_out": 2.0, "aux": 1.0, "jacobian_penalty": 0.5},
        {"loss": 1.0, "fvu_in": 0.0, "fvu_out": 1.0, "aux": 0.0},
    ]
    for terms in steps[:2]:
        averages.add({key: torch.tensor(value) for key, value in terms.items()})
    restored = TermAverages(averages.state())
    for target in (averages, restored):
        target.add({key: torch.tensor(value) for key, value in steps[2].items()})
    expected = {key: sum(s[key] for s in steps) / 3 for key in TERMS[:-1]}
    expected["jacobian_penalty"] = 0.5  # averaged over the one step that computed it
    assert averages.means() == pytest.approx(expected)
    assert restored.means() == averages.means()
    averages.reset()
    assert averages.steps == 0 and set(averages.sums.values()) == {0.0}


def test_log_and_checkpoint_schedules():
    config = micro_config(steps=12, log_every=5, checkpoint_every=4)
    assert [s for s in range(12) if config.logs_after(s)] == [4, 9, 11]
    assert [s for s in range(12) if config.checkpoints_after(s)] == [3, 7, 11]
    assert not any(micro_config(steps=12).checkpoints_after(s) for s in range(12))


def test_trainer_steps_and_logs_are_train_pair(model, tokens):
    """train_pair is PairTrainer's train_step and log, composed."""
    config = micro_config(jacobian_coefficient=1.0, steps=8, log_every=3)
    whole = train_pair(model, tokens, config, progress=False)
    trainer = PairTrainer(model, tokens, config)
    batches = trainer.stream.batches(config.batch_tokens)
    for step in range(config.steps):
        loss = trainer.train_step(*next(batches), with_penalty=config.logs_after(step))
        assert loss.jacobian_penalty is not None
        if config.logs_after(step):
            trainer.log()
    assert trainer.state.step == whole.step and trainer.state.history == whole.history
    for key, value in whole.pair.sae_out.state_dict().items():
        torch.testing.assert_close(trainer.state.pair.sae_out.state_dict()[key], value)


def test_metrics_table_heads_with_the_measured_eps():
    stats = {
        "ev_in": 0.9,
        "ev_out": 0.8,
        "unfired_in": 0.0,
        "unfired_out": 0.5,
        "frac_abs_j_gt_eps": 0.125,
        "mean_abs_j": 0.01,
    }
    metrics = {"measured": {"eps": 0.05, "pairs": {"jsae": {"0": stats}}}}
    header, rule, row = metrics_table(metrics).splitlines()
    assert "frac abs J>0.05 |" in header
    assert header.count("|") == rule.count("|") == row.count("|")
    assert row.startswith("| 0 | jsae | nan | 0.900 | 0.800 |") and "| n/a | n/a |" in row


def test_python_m_jsae_demo_has_its_command_line():
    done = subprocess.run(
        [sys.executable, "-m", "jsae.demo", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert "Rebuild jsae's bundled default." in done.stdout and "--quick" in done.stdout
