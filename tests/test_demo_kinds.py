"""The bundled default's pair kinds (jsae.demo.kinds) and the targets each kind is held to
(jsae.demo.targets): recipes become the training configs they name, the source declares
them, and every target is met or missed by its own figure."""

from __future__ import annotations

import pytest

from jsae.demo import FULL, QUICK
from jsae.demo.build import pair_config
from jsae.demo.kinds import JSAE, KINDS, NORMALIZED, PLAIN, KindRecipe, declared_kinds
from jsae.demo.targets import (
    BASE_TARGETS,
    JSAE_TARGETS,
    TARGET_SPARSITY_RATIO,
    check_targets,
)
from jsae.errors import InputError
from jsae.train import PairTrainingConfig


def test_recipes_validate_themselves():
    with pytest.raises(InputError, match="pair kind is a short lowercase name"):
        KindRecipe("Bad Name", "x", 1.0)
    with pytest.raises(InputError, match="λ must be >= 0"):
        KindRecipe("neg", "x", (1.0, -1.0))
    per_layer = KindRecipe("per_layer", "x", (0.0, 2.0))
    assert per_layer.coefficient(1) == 2.0 and per_layer.penalized
    assert not PLAIN.penalized and JSAE.penalized and NORMALIZED.penalized


@pytest.mark.parametrize("layer", [0, 1])
def test_each_kind_trains_at_the_demo_scale_with_only_its_own_settings_changed(layer):
    defaults = PairTrainingConfig(layer=layer)
    configs = {r.name: pair_config(FULL, layer, r, seed=3) for r in FULL.kinds}
    assert [r.name for r in FULL.kinds] == ["plain", "jsae", "normalized"]
    shared = {"d_sae", "k", "lr", "batch_tokens", "steps", "seed", "aux_k", "jacobian_tokens"}
    for name in shared:
        assert len({getattr(c, name) for c in configs.values()}) == 1, name
    assert configs["plain"].steps == FULL.sae_steps[layer] and configs["plain"].seed == 3
    # jsae is the research objective and init as PairTrainingConfig's defaults hold them
    research = ("objective", "b_dec_init", "apply_b_dec_to_input", "encoder_init")
    for name in (*research, "max_grad_norm", "warmup_steps", "jacobian_warmup_steps"):
        assert getattr(configs["jsae"], name) == getattr(defaults, name), name
    assert configs["jsae"].jacobian_coefficient == 0.5 * FULL.k**2 / FULL.d_model
    assert (configs["plain"].jacobian_coefficient, configs["plain"].b_dec_init) == (0.0, "mean")
    normalized = configs["normalized"]
    assert (normalized.objective, normalized.jacobian_coefficient) == ("normalized", 3.0)
    assert normalized.b_dec_init == "mean" and normalized.apply_b_dec_to_input


def test_the_source_declares_every_kind_and_its_comparisons():
    kinds = declared_kinds(KINDS)
    assert kinds.order == ("jsae", "normalized", "plain")
    assert kinds.compared == (("jsae", "plain"), ("normalized", "plain"), ("normalized", "jsae"))
    assert kinds.compared_for("plain") == ("jsae", "plain")
    assert declared_kinds((PLAIN, JSAE)).compared == (("jsae", "plain"),)
    assert QUICK.kinds == KINDS


def _healthy() -> dict:
    return {
        "ev_in": 0.9,
        "ev_out": 0.9,
        "output_cv": 0.5,
        "unfired_out": 0.1,
        "frac_abs_j_gt_eps": 0.3,
        "causal": {"auc": 0.9, "ratio": 6.0},
        "matched": {"ratio": 5.0},
    }


def _measured(jsae: dict) -> tuple[dict, dict]:
    plain = {**_healthy(), "frac_abs_j_gt_eps": 0.9}
    measured = {"eps": 0.01, "pairs": {"plain": {"0": plain}, "normalized": {"0": jsae}}}
    training = {
        "plain": {"0": {"jacobian_coefficient": 0.0, "dead_out": 0.0}},
        "normalized": {"0": {"jacobian_coefficient": 3.0, "dead_out": 0.01}},
    }
    return measured, training


def test_a_healthy_jsae_meets_every_target_and_each_figure_misses_only_its_own():
    measured, training = _measured(_healthy())
    targets = check_targets(measured, training)
    assert all(t["met"] for t in targets)
    by_kind = {kind: [t["name"] for t in targets if t["kind"] == kind] for kind in ("plain",
               "normalized")}  # fmt: skip
    assert len(by_kind["plain"]) == len(BASE_TARGETS)
    assert len(by_kind["normalized"]) == len(JSAE_TARGETS) + 2  # unfired, sparsity vs plain
    misses = {
        "ev_in": 0.84,
        "ev_out": 0.79,
        "output_cv": 0.19,
        "unfired_out": 0.31,
        "frac_abs_j_gt_eps": 0.9 * TARGET_SPARSITY_RATIO + 0.01,
    }
    for key, value in misses.items():
        measured, training = _measured({**_healthy(), key: value})
        missed = [t for t in check_targets(measured, training) if not t["met"]]
        assert [t["kind"] for t in missed] == ["normalized"], key
        assert len(missed) == 1 and missed[0]["value"] != pytest.approx(0.0), key
    for section, key in (("causal", "auc"), ("causal", "ratio"), ("matched", "ratio")):
        stats = _healthy()
        stats[section] = {**stats[section], key: 0.79 if key == "auc" else 3.9}
        missed = [t for t in check_targets(*_measured(stats)) if not t["met"]]
        assert len(missed) == 1 and missed[0]["kind"] == "normalized", (section, key)
    measured, training = _measured(_healthy())
    training["normalized"]["0"] = {**training["normalized"]["0"], "dead_out": 0.06}
    missed = [t for t in check_targets(measured, training) if not t["met"]]
    assert [t["name"] for t in missed] == ["dead_out <= 0.05"]


def test_without_training_every_kind_but_plain_is_held_to_the_jsae_targets():
    measured, _ = _measured(_healthy())
    names = {t["name"] for t in check_targets(measured) if t["kind"] == "normalized"}
    assert "auc >= 0.8" in names and "dead_out <= 0.05" not in names  # no training figures
    assert {t["kind"] for t in check_targets(measured)} == {PLAIN.name, "normalized"}
