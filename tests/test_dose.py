"""The dose-response curve of one connection (the engine's perturbation, swept) and the
classifier of its shape."""

import math

import numpy as np
import pytest
import torch

from jsae.ablation import AblationConfig, ablate
from jsae.dose import CURVE_LABELS, classify_curve, dose_response
from jsae.errors import InputError
from jsae.loading import Source
from jsae.prompt import mlp_inputs, tokenize
from jsae.sandwich import Sandwich
from tests.helpers import tiny_model, tiny_pairs

PROMPT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def source(model):
    return Source("tiny", model, tiny_pairs(model))


def test_dose_response_on_a_real_tiny_pair(source, model):
    pair = source.pair(1)
    sandwich = Sandwich(model, pair)
    prompt = tokenize(model, PROMPT)
    pos = 3
    x = mlp_inputs(model, prompt.tokens, 1)[pos]
    base = sandwich(x[None])
    in_f, out_f = int(base.in_idx[0, 1]), int(base.out_idx[0, 0])
    dose = dose_response(sandwich, x, in_f, out_f, points=81)
    a = float(base.in_act[0, 1])
    assert dose.actual_in == pytest.approx(a)
    assert dose.curve["in_act"].min() == 0 and dose.curve["in_act"].max() == pytest.approx(
        max(5, a + 1)
    )
    assert a in dose.curve["in_act"].to_numpy()
    assert dose.actual_out == pytest.approx(float(base.out_act[0, 0]), abs=1e-5)
    assert dose.jacobian == pytest.approx(float(base.jacobian[0, 0, 1]), abs=1e-6)
    # a' = 0 is the zero-mode ablation of this connection (top-k re-selection included).
    zero = ablate(model, pair, PROMPT, config=AblationConfig(mode="zero")).table
    row = zero[(zero.position == pos) & (zero.in_feature == in_f) & (zero.out_feature == out_f)]
    after = float(row["out_act"].iloc[0] + row["diff"].iloc[0])
    assert float(dose.curve["out_act"].iloc[0]) == pytest.approx(after, abs=1e-5)
    shape = classify_curve(dose.curve["in_act"], dose.curve["out_act"])
    assert shape.label in CURVE_LABELS


def test_dose_response_of_an_inactive_input_feature_starts_at_zero(source, model):
    pair = source.pair(1)
    sandwich = Sandwich(model, pair)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[2]
    base = sandwich(x[None])
    inactive = next(f for f in range(pair.d_sae_in) if f not in base.in_idx[0].tolist())
    dose = dose_response(sandwich, x, inactive, int(base.out_idx[0, 0]), a_max=2.0)
    assert dose.actual_in == 0.0 and math.isnan(dose.jacobian)
    assert dose.curve["in_act"].max() == 2.0
    with pytest.raises(InputError):
        dose_response(sandwich, x, pair.d_sae_in, 0)


A = np.linspace(0, 5, 101)


@pytest.mark.parametrize(
    ("y", "label"),
    [
        (2 * A + 1, "linear"),
        (-0.5 * A + 3, "linear"),
        (np.full_like(A, 0.7), "linear"),
        (np.zeros_like(A), "linear"),
        (np.where(A < 1.5, 0.0, 3 * A - 2), "jumprelu"),  # jump at the threshold
        (np.maximum(A - 1, 0), "jumprelu"),  # a plain ReLU kink
        (np.maximum(2 - 0.8 * A, 0), "jumprelu"),  # linear, then switched off
        (np.sin(2 * A), "other"),
        (A**2, "other"),
        (np.where((A > 1) & (A < 3), A, 0.0), "other"),  # on, then off again
    ],
)
def test_classify_constructed_curves(y, label):
    assert classify_curve(A, y).label == label


def test_classify_reports_the_threshold_and_slope():
    shape = classify_curve(A, np.where(A < 1.5, 0.0, 3 * A - 2))
    assert shape.threshold == pytest.approx(1.5, abs=0.05)
    assert shape.slope == pytest.approx(3.0)
    assert shape.jump == pytest.approx(2.5, abs=0.2)
    assert "Zero below" in shape.description
    shuffled = np.random.default_rng(0).permutation(len(A))
    assert classify_curve(A[shuffled], (2 * A + 1)[shuffled]).label == "linear"
    with pytest.raises(InputError):
        classify_curve(np.array([1.0]), np.array([1.0]))


def test_dose_curve_at_the_unit_step_is_the_engines_diff(source, model):
    """a′ = a − 1 is the unit-mode perturbation: the curve there is out_act + diff of the
    engine's table, for every connection of a token."""
    pair = source.pair(1)
    sandwich = Sandwich(model, pair)
    table = ablate(model, pair, PROMPT, config=AblationConfig(mode="unit")).table
    pos = 4
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[pos]
    rows = table[table.position == pos]
    assert len(rows) == pair.k_in * pair.k_out
    for row in rows.itertuples():
        a = float(row.in_act)
        dose = dose_response(sandwich, x, row.in_feature, row.out_feature, in_acts=[a - 1.0])
        curve = dict(zip(dose.curve["in_act"], dose.curve["out_act"], strict=True))
        assert dose.actual_in == pytest.approx(a, abs=1e-6)
        assert dose.actual_out == pytest.approx(float(row.out_act), abs=1e-5)
        unit = curve[min(curve, key=lambda v: abs(v - (a - 1.0)))]
        assert unit - dose.actual_out == pytest.approx(float(row.diff), abs=1e-5)


@torch.no_grad()
def test_dose_curve_equals_sae_lens_encode_along_the_sweep(source, model):
    """Independent reference: the MLP module and sae-lens's ``encode`` (top-k included) at
    x + (a′ − a)·W_dec_in[i], point by point."""
    pair = source.pair(1)
    sandwich = Sandwich(model, pair)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[5]
    base = sandwich(x[None])
    in_f, out_f = int(base.in_idx[0, 0]), int(base.out_idx[0, 1])
    a = float(base.in_act[0, 0])
    dose = dose_response(sandwich, x, in_f, out_f, points=41, a_max=4 * a + 10)
    mlp = model.blocks[1].mlp
    for a_new, y in zip(dose.curve["in_act"], dose.curve["out_act"], strict=True):
        x_new = x + (a_new - a) * pair.sae_in.W_dec[in_f]
        expected = pair.sae_out.encode(mlp(x_new[None, None])[0, 0])[out_f]
        assert y == pytest.approx(float(expected), abs=1e-5)
