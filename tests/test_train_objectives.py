"""The training objectives (jsae.train.config.OBJECTIVES) against independent computations:
the research code's loss written out as jacobian_saes does it, Jacobians by jacrev through
TransformerLens's MLP, the research code's schedules built from torch's own schedulers."""

from __future__ import annotations

import copy

import pytest
import torch

from jsae.errors import InputError
from jsae.pair import JSAEPair
from jsae.sandwich import MLPWeights
from jsae.train import PairTrainer, new_pair, pair_loss, train_pair
from jsae.train.checkpoint import BEFORE_OBJECTIVES
from jsae.train.config import (
    BUNDLE_V1,
    DEFAULT_OBJECTIVE,
    DEFAULT_WARM_START_FRACTION,
    OBJECTIVES,
    PairTrainingConfig,
)
from tests.helpers import hook_activations, micro_config, random_token_rows, tiny_model
from tests.reference import jacobian_rows, research_loss


@pytest.fixture(scope="module")
def model():
    return tiny_model(normalization_type="LNPre")


@pytest.fixture(scope="module")
def tokens():
    return random_token_rows()


def batch(model, tokens, config):
    """A trained-looking pair (decoder biases moved off zero) and a batch of its block."""
    pair = new_pair(model, config)
    with torch.no_grad():
        for sae in (pair.sae_in, pair.sae_out):
            sae.b_dec.add_(0.1 * torch.randn_like(sae.b_dec))
            sae.b_enc.add_(0.1 * torch.randn_like(sae.b_enc))
    x, y = hook_activations(model, tokens[:2], config.layer)
    return pair, x, y


def penalty_of(model, pair: JSAEPair, x, y, objective: str, below: int = 0) -> torch.Tensor:
    mlp = MLPWeights.from_model(model, pair.layer)
    loss = pair_loss(pair, mlp, x, y, 1.0, 1.0, 1.0, objective=objective, below_threshold=below)
    return loss.jacobian_penalty


def test_the_default_is_the_research_code_loss_and_gradient(model, tokens):
    """One default train_step: its loss is the research code's (MSE of each SAE + λ·mean|J|,
    written out as jacobian_saes does it), and the gradient it stepped Adam with is that
    loss's gradient clipped to norm 1 together over both SAEs (clip_grad_norm_(..., 1.0))."""
    config = micro_config(jacobian_coefficient=2.0, warmup_steps=None)
    assert config.objective == DEFAULT_OBJECTIVE == "research"
    trainer = PairTrainer(model, tokens, config)
    x, _ = next(trainer.stream.batches(config.batch_tokens))
    before = copy.deepcopy(trainer.state.pair)
    loss = trainer.train_step(x, trainer.mlp(x)[0], with_penalty=True)

    coefficient = config.coefficient_at(0)
    assert 0 < coefficient < config.jacobian_coefficient, "λ is warming up"
    expected = research_loss(model, before, x, coefficient)
    torch.testing.assert_close(loss.total, expected, rtol=1e-5, atol=1e-6)
    params = [*before.sae_in.parameters(), *before.sae_out.parameters()]
    grads = torch.autograd.grad(expected, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    norm = torch.cat([g.flatten() for g in grads]).norm()
    assert norm > 1, "the clipping is exercised"
    stepped = [*trainer.state.pair.sae_in.parameters(), *trainer.state.pair.sae_out.parameters()]
    for p, g in zip(stepped, grads, strict=True):
        got = torch.zeros_like(p) if p.grad is None else p.grad
        torch.testing.assert_close(got, g / norm, rtol=1e-3, atol=1e-6)


def test_research_penalty_is_mean_abs_jacobian_by_jacrev(model, tokens):
    config = micro_config()
    pair, x, y = batch(model, tokens, config)
    with torch.no_grad():
        y = MLPWeights.from_model(model, 1)(x)[0]
    reference = torch.stack([jacobian_rows(model, pair, x[t], pair.k_out) for t in range(len(x))])
    got = penalty_of(model, pair, x, y, "research")
    torch.testing.assert_close(got, reference.abs().mean(), rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(penalty_of(model, pair, x, y, "fvu"), got, rtol=0, atol=0)


@pytest.mark.parametrize("below", [1, 4])
def test_below_threshold_penalty_adds_the_rows_below_the_threshold(model, tokens, below):
    """Σ|J| over the top k_out + m output rows (jacrev), divided by T·k_out·k_in; the output
    encoder's columns of the rows below the threshold get gradients, no other column does."""
    config = micro_config(objective="below_threshold", below_threshold=below)
    assert config.penalty_below == below
    pair, x, _ = batch(model, tokens, config)
    with torch.no_grad():
        y = MLPWeights.from_model(model, 1)(x)[0]
    n_rows = pair.k_out + below
    reference = torch.stack([jacobian_rows(model, pair, x[t], n_rows) for t in range(len(x))])
    expected = reference.abs().sum() / (len(x) * pair.k_out * pair.k_in)
    got = penalty_of(model, pair, x, y, "below_threshold", below)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)
    assert got > penalty_of(model, pair, x, y, "research")

    (grad,) = torch.autograd.grad(got, pair.sae_out.W_enc)
    with torch.no_grad():
        pre = pair.sae_out.process_sae_in(y) @ pair.sae_out.W_enc + pair.sae_out.b_enc
    covered = torch.zeros(pair.d_sae_out, dtype=torch.bool)
    covered[pre.sort(dim=-1, descending=True).indices[:, :n_rows].flatten()] = True
    assert (grad.abs().sum(0) > 0).tolist() == covered.tolist()
    active = torch.zeros_like(covered)
    active[pre.topk(pair.k_out, dim=-1).indices.flatten()] = True
    assert (covered & ~active).any(), "some rows below the threshold are penalised"


def test_normalized_penalty_is_per_token_l1_over_rms_and_scale_free(model, tokens):
    config = micro_config(objective="normalized")
    pair, x, _ = batch(model, tokens, config)
    with torch.no_grad():
        y = MLPWeights.from_model(model, 1)(x)[0]
    per_token = []
    for t in range(len(x)):
        J = jacobian_rows(model, pair, x[t], pair.k_out)
        per_token.append(J.abs().mean() / J.pow(2).mean().sqrt())
    got = penalty_of(model, pair, x, y, "normalized")
    torch.testing.assert_close(got, torch.stack(per_token).mean(), rtol=1e-5, atol=1e-8)
    research = penalty_of(model, pair, x, y, "research")
    assert not pair.sae_out.cfg.apply_b_dec_to_input, "pre-activations scale with W_enc, b_enc"
    with torch.no_grad():  # a larger output encoder (and bias: the same top k) ...
        pair.sae_out.W_enc.mul_(3.0)
        pair.sae_out.b_enc.mul_(3.0)
    # ... triples mean|J| but leaves the normalized penalty as it was
    torch.testing.assert_close(penalty_of(model, pair, x, y, "research"), 3 * research)
    torch.testing.assert_close(penalty_of(model, pair, x, y, "normalized"), got)


def test_warm_start_trains_a_plain_pair_then_warms_lambda_up(model, tokens):
    """Until penalty_start the warm start's steps are a plain pair's (the same weights,
    bitwise); then λ rises linearly over jacobian_warmup steps."""
    steps, warmup = 20, 4
    config = micro_config(
        objective="warm_start", jacobian_coefficient=5.0, steps=steps, jacobian_warmup_steps=warmup
    )
    start = int(steps * DEFAULT_WARM_START_FRACTION)
    assert config.penalty_start == start
    expected = [0.0] * start + [5.0 * min(1.0, (s + 1) / warmup) for s in range(steps - start)]
    assert [config.coefficient_at(s) for s in range(steps)] == pytest.approx(expected)
    assert micro_config(objective="warm_start", warm_start_fraction=0.25).penalty_start == 10

    warm = PairTrainer(model, tokens, config)
    plain = PairTrainer(model, tokens, micro_config(steps=steps, jacobian_coefficient=0.0))
    batches = warm.stream.batches(config.batch_tokens)
    for step in range(start + 1):
        x, y = next(batches)
        warm.train_step(x, y, with_penalty=False)
        plain.train_step(x, y, with_penalty=False)
        same = all(
            torch.equal(a, b)
            for a, b in zip(
                warm.state.pair.sae_out.state_dict().values(),
                plain.state.pair.sae_out.state_dict().values(),
                strict=True,
            )
        )
        assert same == (step < start), step


def test_research_schedules_are_the_research_codes_torch_schedulers():
    """lr: LinearLR warm-up over 1% of the steps, constant, LinearLR decay to 0 over the
    last 20%, chained by SequentialLR as jacobian_saes's get_lr_scheduler does; λ: linear
    over the first 5% of the steps (one step ahead of the research code's LinearScheduler,
    which holds λ = 0 on step 0)."""
    steps = 1000
    config = PairTrainingConfig(layer=0, steps=steps, jacobian_coefficient=2.0)
    assert config.lr == 5e-4 and config.lr_warmup == 10 and config.jacobian_warmup == 50
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=config.lr)
    warm, decay = steps // 100, steps // 5
    scheduler = torch.optim.lr_scheduler.SequentialLR(
        optimizer,
        schedulers=[
            torch.optim.lr_scheduler.LinearLR(optimizer, 1 / warm, 1.0, total_iters=warm - 1),
            torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
            torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, total_iters=decay),
        ],
        milestones=[warm, steps - decay],
    )
    for step in range(steps):
        assert config.lr_at(step) == pytest.approx(optimizer.param_groups[0]["lr"], abs=1e-12)
        optimizer.step()
        scheduler.step()
    lam = [config.coefficient_at(s) for s in range(steps)]
    assert lam[:3] == pytest.approx([2.0 / 50, 4.0 / 50, 6.0 / 50]) and lam[49:] == [2.0] * 951


def test_research_init_zero_biases_and_the_encoder_before_normalisation(model, tokens):
    """The research code's init: decoder biases 0, W_enc = the Kaiming-uniform decoder's
    transpose before its rows were normalised (column norms about √2); BUNDLE_V1: the block's
    mean and the unit decoder's transpose."""
    research = PairTrainer(model, tokens, micro_config()).state.pair
    first = PairTrainer(model, tokens, micro_config(**BUNDLE_V1))
    for sae in (research.sae_in, research.sae_out):
        assert not sae.b_dec.any()
        enc = sae.W_enc.detach().T
        torch.testing.assert_close(enc / enc.norm(dim=-1, keepdim=True), sae.W_dec)
        # kaiming_uniform_ on [d_sae, d_in]: U(±sqrt(6 / d_in)), so E||row||² = 2
        assert float(enc.pow(2).sum(-1).mean()) == pytest.approx(2.0, rel=0.15)
    pair = first.state.pair
    for sae, data in zip((pair.sae_in, pair.sae_out), first.stream.block(0), strict=True):
        torch.testing.assert_close(sae.b_dec, data.mean(0))
        torch.testing.assert_close(sae.W_enc.T, sae.W_dec, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"objective": "l1nt"}, "objective must be one of"),
        ({"b_dec_init": "median"}, "b_dec_init"),
        ({"encoder_init": "orthogonal"}, "encoder_init"),
        ({"warm_start_fraction": 0.5}, "only applies to objective 'warm_start'"),
        ({"below_threshold": 4}, "only applies to objective 'below_threshold'"),
        ({"objective": "warm_start", "warm_start_fraction": 1.0}, "strictly between"),
        ({"objective": "below_threshold", "below_threshold": 0}, "positive integer"),
        ({"objective": "below_threshold", "below_threshold": 61}, "exceeds d_sae"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"jacobian_warmup_steps": -1}, "jacobian_warmup_steps"),
        ({"warmup_steps": 1.5}, "warmup_steps"),
    ],
)
def test_objective_settings_validate_themselves(overrides, match):
    with pytest.raises(InputError, match=match):
        micro_config(**overrides)


def test_every_objective_trains(model, tokens):
    for objective in OBJECTIVES:
        result = PairTrainer(
            model, tokens, micro_config(objective=objective, jacobian_coefficient=1.0, steps=3)
        ).fit(progress=False)
        assert result.step == 3 and torch.isfinite(torch.tensor(result.history[-1]["loss"]))


def test_a_checkpoint_from_before_the_objectives_resumes_as_bundle_v1(model, tokens, tmp_path):
    """A checkpoint whose config lacks the objective settings was trained as BUNDLE_V1 says:
    it resumes under BUNDLE_V1 and is refused under the research default, naming the field."""
    config = micro_config(**BUNDLE_V1, steps=4, checkpoint_every=2)
    train_pair(model, tokens, config, checkpoint_dir=tmp_path, progress=False)
    path = tmp_path / "step_000002.pt"
    saved = torch.load(path, weights_only=True)
    for name in BEFORE_OBJECTIVES:
        del saved["config"][name]
    torch.save(saved, path)
    resumed = train_pair(model, tokens, config, resume_from=path, progress=False)
    assert resumed.step == 4
    research = micro_config(
        steps=4,
        checkpoint_every=2,
        **{k: v for k, v in BUNDLE_V1.items() if k not in BEFORE_OBJECTIVES},
    )
    with pytest.raises(InputError, match="objective: 'fvu' -> 'research'"):
        train_pair(model, tokens, research, resume_from=path, progress=False)
