"""Pair health against independent computations: numpy on sae-lens's own encode/decode, a full
sort of hand-computed pre-activations, and constructed flat / tiny-margin / healthy codes."""

from __future__ import annotations

import copy
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import TEXT, tiny_model, tiny_pair

from jsae.analysis import FLAT_CV, TINY_MARGIN, UNFIRED_OUT, PairHealth, pair_health
from jsae.analysis.health import DESCRIPTIONS, MIN_EXPECTED_FIRINGS
from jsae.errors import InputError
from jsae.prompt import mlp_activations, tokenize
from jsae.sandwich import Sandwich

LAYER = 1
K = 8
D_SAE = 64


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def pair(model):
    return tiny_pair(model, LAYER, d_sae=D_SAE, k=K, apply_b_dec_to_input=True)


@pytest.fixture(scope="module")
def fitted(pair, acts):
    """The pair with a tied output SAE centred on the prompt's MLP outputs, so that it
    reconstructs them (explained variance > 0): pre = 0.5 (y - ȳ) @ W_dec.T + b_enc."""
    fitted = copy.deepcopy(pair)
    sae = fitted.sae_out
    with torch.no_grad():
        sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True))
        sae.W_enc.copy_(0.5 * sae.W_dec.T)
        sae.b_dec.copy_(acts[1].mean(0))
    return fitted


@pytest.fixture(scope="module")
def acts(model):
    """The prompt's MLP inputs and the model's own MLP outputs, BOS left out."""
    tokens = tokenize(model, TEXT * 2).tokens
    x, y = mlp_activations(model, tokens[None], [LAYER])[LAYER]
    return x[0, 1:], y[0, 1:]


def numpy_cv(dense: np.ndarray) -> float:
    """Median over rows of std/mean of each row's nonzero entries (rows with two or more)."""
    cvs = [np.std(row[row > 0]) / np.mean(row[row > 0]) for row in dense if (row > 0).sum() >= 2]
    return float(np.median(cvs))


def explained(y: np.ndarray, recon: np.ndarray) -> float:
    return 1 - ((y - recon) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()


def test_every_field_matches_an_independent_computation(model, fitted, acts):
    x, y = acts
    pair = fitted
    health = pair_health(Sandwich(model, pair), x, y)
    sae_in, sae_out = pair.sae_in, pair.sae_out
    with torch.no_grad():
        dense_in = sae_in.encode(x).double().numpy()
        dense_out = sae_out.encode(y).double().numpy()
        recon = sae_out.decode(sae_out.encode(y)).double().numpy()
    yn = y.double().numpy()
    w_enc, b_enc = sae_out.W_enc.detach().double().numpy(), sae_out.b_enc.detach().double().numpy()
    w_dec, b_dec = sae_out.W_dec.detach().double().numpy(), sae_out.b_dec.detach().double().numpy()

    assert health.tokens == len(x) == len(yn)
    assert health.output_cv == pytest.approx(numpy_cv(dense_out), abs=1e-5)
    assert health.input_cv == pytest.approx(numpy_cv(dense_in), abs=1e-5)

    ev = explained(yn, recon)
    binary = dense_out.copy()
    for row in binary:
        row[row > 0] = row[row > 0].mean()
    binary_ev = explained(yn, binary @ w_dec + b_dec)
    assert ev > 0.3 and health.ev_out == pytest.approx(ev, abs=1e-5)
    assert health.binary_ev_out == pytest.approx(binary_ev, abs=1e-5)
    assert health.binary_share == pytest.approx(binary_ev / ev, abs=1e-4)

    pre = (yn - b_dec) @ w_enc + b_enc  # the pair's output SAE subtracts b_dec first
    ordered = -np.sort(-pre, axis=1)
    margins = (ordered[:, :K] - ordered[:, K : K + 1]).ravel()
    selected = np.maximum(ordered[:, :K], 0).ravel()
    scale = np.median(selected)
    assert health.margin_median == pytest.approx(np.median(margins), abs=1e-5)
    assert health.margin_q10 == pytest.approx(np.quantile(margins, 0.1), abs=1e-5)
    assert health.margin_relative == pytest.approx(np.median(margins) / scale, abs=1e-5)
    near = sum(m < TINY_MARGIN * scale for m in margins) / len(margins)
    assert health.near_displacement == pytest.approx(near, abs=2 / len(margins))

    assert health.unfired_in == pytest.approx(1 - (dense_in > 0).any(0).mean())
    assert health.unfired_out == pytest.approx(1 - (dense_out > 0).any(0).mean())
    # a prompt this short says nothing about unfired features: no warning for them
    assert health.tokens * K / D_SAE < MIN_EXPECTED_FIRINGS
    assert not any("never fire" in w for w in health.warnings)


def test_mlp_output_defaults_to_the_sandwich_mlp(model, pair, acts):
    x, y = acts
    sandwich = Sandwich(model, pair)
    default = pair_health(sandwich, x)
    np.testing.assert_equal(asdict(default), asdict(pair_health(sandwich, x, sandwich(x).mlp_out)))
    given = pair_health(sandwich, x, y)  # the model's own hook_mlp_out: the same numbers
    assert default.ev_out == pytest.approx(given.ev_out, abs=1e-5)
    # the random output SAE reconstructs worse than the mean: no share of it to speak of
    assert default.ev_out < 0 and np.isnan(default.binary_share)


def test_margins_are_the_engines(model, pair, acts):
    """The engine's per-connection margin (out_pre - runner_up) and pair health's agree."""
    sandwich = Sandwich(model, pair)
    base = sandwich(acts[0])
    margins = (base.out_pre - base.runner_up[:, None]).double().numpy().ravel()
    health = pair_health(sandwich, acts[0])
    assert health.margin_median == pytest.approx(np.median(margins), abs=1e-6)
    assert health.margin_q10 == pytest.approx(np.quantile(margins, 0.1), abs=1e-6)


def with_output_code(pair, bias: torch.Tensor, noise: float):
    """A copy of the pair whose output SAE's pre-activations are bias + noise * (y - b_dec) @ W:
    a code chosen by ``bias``, nearly the same on every token."""
    constructed = copy.deepcopy(pair)
    with torch.no_grad():
        constructed.sae_out.W_enc.mul_(noise)
        constructed.sae_out.b_enc.copy_(bias)
    return constructed


def random_inputs(model, tokens: int) -> torch.Tensor:
    return torch.randn(tokens, model.cfg.d_model, generator=torch.Generator().manual_seed(1))


def test_a_flat_code_warns_flat_but_not_tiny(model, pair):
    bias = torch.zeros(D_SAE)
    bias[:K] = 1.0  # the same k features win on every token, all at about 1
    health = pair_health(
        Sandwich(model, with_output_code(pair, bias, 1e-3)), random_inputs(model, 50)
    )
    assert health.output_cv < 0.01 < FLAT_CV and health.flat
    assert health.margin_relative > 0.9 and not health.tiny_margins
    assert len(health.warnings) == 1 and health.warnings[0].startswith("The output code is flat")
    assert "which no Jacobian entry sees" in health.warnings[0]


def test_tiny_margins_warn_on_a_code_that_is_not_flat(model, pair):
    bias = torch.zeros(D_SAE)
    bias[0] = 10.0  # one strong feature: the code is far from flat ...
    bias[1 : K + 1] = 1 + 1e-3 * torch.arange(K, 0, -1)  # ... but k-1 sit just above the (k+1)-th
    health = pair_health(
        Sandwich(model, with_output_code(pair, bias, 1e-5)), random_inputs(model, 50)
    )
    assert health.output_cv > 1 and not health.flat
    assert health.margin_median == pytest.approx(0.0045, abs=1e-4)  # of 0.001..0.007, 9
    assert health.margin_relative == pytest.approx(0.0045 / 1.0055, abs=1e-4)
    assert health.tiny_margins and health.near_displacement == (K - 1) / K
    assert len(health.warnings) == 1 and health.warnings[0].startswith("Margins are tiny")


def test_a_healthy_code_does_not_warn(model, pair):
    bias = torch.zeros(D_SAE)
    bias[: K + 1] = 10 * 0.5 ** torch.arange(K + 1.0)  # 10, 5, 2.5, ...: spread, clear gaps
    health = pair_health(
        Sandwich(model, with_output_code(pair, bias, 1e-3)), random_inputs(model, 50)
    )
    assert health.output_cv > 0.5 and not health.flat
    assert health.margin_relative > TINY_MARGIN and not health.tiny_margins
    assert health.warnings == ()


def test_many_unfired_outputs_warn_only_on_enough_tokens(model, pair):
    bias = torch.zeros(D_SAE)
    bias[: K + 1] = 10 * 0.5 ** torch.arange(K + 1.0)
    constructed = Sandwich(model, with_output_code(pair, bias, 1e-3))
    enough = int(MIN_EXPECTED_FIRINGS * D_SAE / K) + 1
    many = pair_health(constructed, random_inputs(model, enough))
    few = pair_health(constructed, random_inputs(model, 20))
    assert many.unfired_out == few.unfired_out == 1 - K / D_SAE > UNFIRED_OUT
    assert len(many.warnings) == 1 and "never fire on these" in many.warnings[0]
    assert few.warnings == ()


def test_summary_is_one_row_per_statistic(model, pair, acts):
    health = pair_health(Sandwich(model, pair), acts[0])
    summary = health.summary()
    assert isinstance(summary, pd.DataFrame)
    assert list(summary.columns) == ["statistic", "value", "description"]
    assert list(summary["statistic"]) == list(DESCRIPTIONS)
    for name, value in zip(summary["statistic"], summary["value"], strict=True):
        assert value == pytest.approx(getattr(health, name), nan_ok=True)
    assert isinstance(health, PairHealth)
    with pytest.raises(AttributeError):
        health.output_cv = 1.0  # frozen


def test_no_tokens_is_refused(model, pair):
    with pytest.raises(InputError, match="at least one token"):
        pair_health(Sandwich(model, pair), torch.zeros(0, model.cfg.d_model))
