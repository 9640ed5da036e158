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
    assert GOLDEN.stat().st_size < 50 * 1024
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


def test_the_shipped_jsae_codes_are_flat_and_count_as_missed(metrics):
    """The bundled JSAEs' output codes are flat (pair health's rule); the plain pairs' are not."""
    for layer, stats in metrics["measured"]["pairs"]["jsae"].items():
        assert is_flat(stats["output_cv"]), layer
        assert not is_flat(metrics["measured"]["pairs"]["plain"][layer]["output_cv"]), layer
    assert not metrics["all_targets_met"]


def test_the_shipped_jsaes_are_the_perverse_case_and_the_plain_pairs_are_not(metrics):
    """What the bundle shows a user: each JSAE's sparse Jacobian does not locate its
    computation (most unimportant movement is top-k exits, |J| ranks movement poorly); each
    plain pair's |J| does."""
    for layer, stats in metrics["measured"]["pairs"]["jsae"].items():
        assert stats["verdict"] == {"level": "no", "perverse": True}, layer
        assert stats["causal"]["exit_share_unimportant"] > 0.9 and stats["causal"]["auc"] < 0.65
        plain = metrics["measured"]["pairs"]["plain"][layer]
        assert not plain["verdict"]["perverse"] and plain["causal"]["auc"] > 0.9, layer


def test_diagnostics_table_shows_every_pair_and_its_verdict(metrics):
    from jsae.demo.targets import diagnostics_table

    lines = diagnostics_table(metrics).splitlines()
    pairs = metrics["measured"]["pairs"]
    assert len(lines) == 2 + sum(len(by) for by in pairs.values())
    for layer, stats in pairs["jsae"].items():
        row = next(line for line in lines if line.startswith(f"| {layer} | jsae |"))
        assert row.endswith("| no (perverse) |")
        assert f"| {stats['causal']['auc']:.2f} |" in row
