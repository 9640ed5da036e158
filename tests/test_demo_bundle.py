"""The shipped bundle (jsae/assets/demo): loads offline, is complete, small, and its
metrics.json is what its held-out sample gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jsae.analysis import is_flat
from jsae.demo import HELDOUT_FILE, METRICS_FILE, check_targets, measure_bundle
from jsae.demo.kinds import KINDS, declared_kinds
from jsae.demo.targets import TARGET_OUTPUT_CV, TARGET_UNFIRED_OUT
from jsae.features import CARDS_DIR, FeatureCards, card_folder_name
from jsae.loading import DEMO_DIR, load_source
from tests.golden.make_golden import GOLDEN, TOKENS, signed_values

MAX_BYTES = 40 * 1024 * 1024
# Recomputing on another machine changes float32 sums in the last bits only.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def demo():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("WANDB_MODE", "disabled")
        return load_source("demo")


@pytest.fixture(scope="module")
def metrics():
    return json.loads((DEMO_DIR / METRICS_FILE).read_text())


@pytest.fixture(scope="module")
def remeasured(demo):
    return measure_bundle(demo, DEMO_DIR / HELDOUT_FILE)


def test_bundle_is_under_40_mb():
    size = sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file())
    assert size <= MAX_BYTES, f"{size / 2**20:.1f} MiB"


def test_bundle_has_a_pair_of_every_kind_for_every_layer(demo):
    layers = list(range(demo.model.cfg.n_layers))
    assert demo.kinds == ["jsae", "normalized", "plain"]
    assert demo.pair_kinds == declared_kinds(KINDS)
    for kind in demo.kinds:
        assert demo.layers(kind) == layers
        for layer in layers:
            pair = demo.pair(layer, kind)
            assert pair.kind == kind and pair.layer == layer
            assert pair.sae_in.cfg.d_in == demo.model.cfg.d_model
    assert demo.model.tokenizer is not None
    assert demo.model.tokenizer.bos_token == "<|endoftext|>"
    assert demo.info["metrics"] == METRICS_FILE


def test_metrics_recompute_on_the_heldout_sample(demo, metrics, remeasured):
    stored = metrics["measured"]
    assert remeasured["tokens"] == stored["tokens"]
    assert remeasured["lm_loss"] == pytest.approx(stored["lm_loss"], abs=TOLERANCE)
    for kind in demo.kinds:
        for layer in map(str, range(demo.model.cfg.n_layers)):
            got, want = remeasured["pairs"][kind][layer], stored["pairs"][kind][layer]
            for key in (
                "ev_in",
                "ev_out",
                "frac_abs_j_gt_eps",
                "mean_abs_j",
                "output_cv",
                "binary_ev_out",
                "margin_median",
                "margin_q10",
            ):
                assert got[key] == pytest.approx(want[key], abs=TOLERANCE), (kind, layer, key)
            for key in ("unfired_in", "unfired_out"):  # counts of 1/d_sae
                assert got[key] == pytest.approx(want[key], abs=2 / demo.pair(0).d_sae_in)
            for key in ("important_mean_abs_diff", "unimportant_mean_abs_diff"):
                assert got["ablation"][key] == pytest.approx(
                    want["ablation"][key], abs=TOLERANCE
                ), (kind, layer, key)
            for key, value in want["causal"].items():
                assert got["causal"][key] == pytest.approx(value, abs=TOLERANCE, nan_ok=True), (
                    kind,
                    layer,
                    key,
                )
            for key, value in want["matched"].items():
                assert got["matched"][key] == pytest.approx(value, abs=TOLERANCE), (kind, key)
            assert got["verdict"] == want["verdict"], (kind, layer)


def test_signed_values_of_the_first_heldout_tokens_match_the_golden_file(demo):
    """Signed, per connection: a sign flip of J or of diff keeps every mean of |.| above but
    fails here. The golden file is tests/golden/make_golden.py's record of the shipped bundle."""
    assert GOLDEN.stat().st_size < 80 * 1024  # 12 pairs
    golden = np.load(GOLDEN)
    got = signed_values(demo)
    assert sorted(got) == sorted(golden.files)
    for kind in demo.kinds:
        for layer in demo.layers(kind):
            key = f"{kind}_{layer}"
            for name in ("in_feature", "out_feature"):
                np.testing.assert_array_equal(got[f"{key}_{name}"], golden[f"{key}_{name}"])
            want = golden[f"{key}_jacobian"]
            assert want.shape[0] == TOKENS and (want > 0).any() and (want < 0).any()
            for name in ("jacobian", "diff"):
                np.testing.assert_allclose(
                    got[f"{key}_{name}"],
                    golden[f"{key}_{name}"],
                    atol=TOLERANCE,
                    rtol=1e-3,
                    err_msg=f"{key} {name}",
                )


def test_metrics_report_targets_honestly(metrics):
    assert metrics["targets"] == check_targets(metrics["measured"], metrics["training"])
    assert metrics["all_targets_met"] == all(t["met"] for t in metrics["targets"])
    lm = metrics["language_model"]
    assert lm["heldout_loss"] < lm["unigram_loss"]


def test_every_pair_ships_its_feature_cards_built_from_the_heldout_sample(demo, metrics):
    """`jsae features --source demo` (what jsae train-demo runs last) built these cards for
    these very weights, from the held-out sample's tokens."""
    for kind in demo.kinds:
        for layer in demo.layers(kind):
            cards = FeatureCards(DEMO_DIR / CARDS_DIR / card_folder_name(kind, layer))
            assert cards.built_for(demo.pair(layer, kind)), (kind, layer)
            assert cards.meta["tokens_counted"] == metrics["measured"]["tokens"]
            assert len(cards.features) == 2 * demo.pair(layer, kind).d_sae_in


def test_heldout_sample_is_small_token_ids(demo):
    from jsae.demo import load_heldout_sample

    tokens = load_heldout_sample(DEMO_DIR / HELDOUT_FILE)
    assert tokens.dtype == torch.long and tokens.ndim == 2
    assert tokens.shape[1] == demo.model.cfg.n_ctx
    assert 2000 <= tokens[:, 1:].numel() <= 20000
    assert (tokens[:, 0] == demo.model.tokenizer.bos_token_id).all()


def test_a_flat_output_code_misses_its_target():
    healthy = {
        "ev_in": 0.9,
        "ev_out": 0.9,
        "output_cv": 0.6,
        "unfired_out": 0.1,
        "frac_abs_j_gt_eps": 0.9,
    }
    flat = {**healthy, "output_cv": 0.04, "unfired_out": 0.5}
    targets = check_targets({"eps": 0.01, "pairs": {"plain": {"0": healthy}, "jsae": {"0": flat}}})
    got = {(t["kind"], t["name"]): t["met"] for t in targets}
    assert got[("plain", f"output_cv >= {TARGET_OUTPUT_CV}")]
    assert got[("plain", f"unfired_out <= {TARGET_UNFIRED_OUT}")]
    assert not got[("jsae", "output_cv >= 0.2")]  # a JSAE's stricter CV target
    assert not got[("jsae", f"unfired_out <= {TARGET_UNFIRED_OUT}")]


def test_no_shipped_output_code_is_flat(metrics):
    """Every kind keeps a graded output code (pair health's rule): the first bundle's JSAEs,
    whose flat codes made them perverse, are gone."""
    for kind, by_layer in metrics["measured"]["pairs"].items():
        for layer, stats in by_layer.items():
            assert not is_flat(stats["output_cv"]), (kind, layer)
    assert not metrics["all_targets_met"]


def test_at_equal_sparsity_the_normalized_penalty_beats_plain_and_the_research_one_does_not(
    metrics,
):
    """The comparison the README draws: each JSAE kind's ratio at its own fraction of
    |J| > ε against the plain pair of its layer split at that same fraction."""
    pairs = metrics["measured"]["pairs"]
    for layer in pairs["plain"]:
        normalized, jsae = pairs["normalized"][layer], pairs["jsae"][layer]
        assert normalized["causal"]["ratio"] > normalized["matched"]["plain_ratio_at_own_fraction"]
        assert jsae["causal"]["ratio"] < jsae["matched"]["plain_ratio_at_own_fraction"]
        assert normalized["frac_abs_j_gt_eps"] < pairs["plain"][layer]["frac_abs_j_gt_eps"]


def test_perverse_verdicts_come_with_exit_dominated_movement_and_plain_is_never_perverse(
    metrics,
):
    pairs = metrics["measured"]["pairs"]
    perverse = [
        (kind, layer)
        for kind, by_layer in pairs.items()
        for layer, stats in by_layer.items()
        if stats["verdict"]["perverse"]
    ]
    assert perverse, "the bundle still shows the perverse case"
    for kind, layer in perverse:
        assert kind != "plain" and pairs[kind][layer]["causal"]["exit_share_unimportant"] > 0.8
    for layer, stats in pairs["plain"].items():
        assert stats["verdict"]["level"] == "partly" and stats["causal"]["auc"] > 0.9, layer


def test_diagnostics_table_shows_every_pair_and_its_verdict(metrics):
    from jsae.demo.targets import diagnostics_table

    lines = diagnostics_table(metrics).splitlines()
    pairs = metrics["measured"]["pairs"]
    assert len(lines) == 2 + sum(len(by) for by in pairs.values())
    for kind, by_layer in pairs.items():
        for layer, stats in by_layer.items():
            row = next(line for line in lines if line.startswith(f"| {layer} | {kind} |"))
            level = stats["verdict"]["level"] + (
                " (perverse)" if stats["verdict"]["perverse"] else ""
            )
            assert row.endswith(f"| {level} |")
            assert f"| {stats['causal']['auc']:.2f} |" in row
