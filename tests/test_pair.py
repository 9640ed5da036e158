import numpy as np
import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from jsae.errors import InputError, SourceError, UnsupportedError
from jsae.pair import (
    PAIR_KINDS,
    PAPER_KINDS,
    JSAEPair,
    PairKinds,
    pair_kind,
    topk_activations,
    topk_encode,
)
from tests.helpers import tiny_model, tiny_pair, tiny_sae


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_topk_encode_matches_sae_lens_encode(apply_b_dec):
    sae = tiny_sae(16, 64, 8, None, apply_b_dec_to_input=apply_b_dec)
    x = torch.randn(5, 16)
    values, indices = topk_encode(sae, x)
    dense = torch.zeros(5, 64).scatter(-1, indices, values)
    torch.testing.assert_close(dense, sae.encode(x), atol=0, rtol=0)
    assert (values[:, :-1] >= values[:, 1:]).all(), "active features are sorted, largest first"


def test_sae_lens_topk_is_the_research_semantics():
    """Top-k of the pre-activations, ReLU on the kept values, zeros elsewhere."""
    sae = tiny_sae(16, 64, 8, None)
    x = torch.randn(3, 16)
    pre = x @ sae.W_enc + sae.b_enc
    kth = pre.topk(8, dim=-1).values[:, -1:]
    expected = torch.where(pre >= kth, pre.relu(), torch.zeros_like(pre))
    torch.testing.assert_close(sae.encode(x), expected, atol=0, rtol=0)


def test_pair_refuses_wrong_hooks_and_sizes():
    model = tiny_model()
    with pytest.raises(
        InputError,
        match="The input SAE of layer 1 reads 'blocks.0.ln2.hook_normalized', but a JSAE pair's "
        "input SAE must read 'blocks.1.ln2.hook_normalized'",
    ):
        JSAEPair(
            tiny_sae(16, 32, 4, "blocks.0.ln2.hook_normalized"),
            tiny_sae(16, 32, 4, "blocks.1.hook_mlp_out"),
            layer=1,
        )
    with pytest.raises(
        InputError,
        match="The output SAE of layer 1 reads 'blocks.1.hook_resid_post', but a JSAE pair's "
        "output SAE must read 'blocks.1.hook_mlp_out'",
    ):
        JSAEPair(
            tiny_sae(16, 32, 4, "blocks.1.ln2.hook_normalized"),
            tiny_sae(16, 32, 4, "blocks.1.hook_resid_post"),
            layer=1,
        )
    wrong_width = JSAEPair(tiny_sae(8, 32, 4, None), tiny_sae(8, 32, 4, None), layer=1)
    with pytest.raises(InputError, match="The input SAE of layer 1 has d_in=8, but the model's"):
        wrong_width.check_model(model)
    wrong_out = JSAEPair(tiny_sae(16, 32, 4, None), tiny_sae(8, 32, 4, None), layer=1)
    with pytest.raises(InputError, match="The output SAE of layer 1 has d_in=8, but the model's"):
        wrong_out.check_model(model)
    with pytest.raises(InputError, match="layers 0..1"):
        tiny_pair(model, layer=1).__class__(
            tiny_sae(16, 32, 4, None), tiny_sae(16, 32, 4, None), layer=5
        ).check_model(model)


def test_pair_refuses_unsupported_sae_settings():
    sae = tiny_sae(16, 32, 4, None)
    sae.cfg.rescale_acts_by_decoder_norm = True
    with pytest.raises(UnsupportedError, match="rescale_acts_by_decoder_norm"):
        JSAEPair(sae, tiny_sae(16, 32, 4, None), layer=0)
    with pytest.raises(InputError, match="A pair kind is a short lowercase name"):
        JSAEPair(tiny_sae(16, 32, 4, None), tiny_sae(16, 32, 4, None), layer=0, kind="Fancy!")


def test_pair_kinds_a_source_declares():
    """The paper's kinds stay the bundle's order and labels; a source may declare its own,
    each a short lowercase name, with the pairs of kinds its comparison page sets side by side."""
    assert PAPER_KINDS.order == PAIR_KINDS and PAPER_KINDS.label("plain") == "Traditional SAEs"
    assert PAPER_KINDS.compared_for("plain") == ("jsae", "plain")
    assert PAPER_KINDS.compared_for("plain_randomized") == ("jsae_randomized", "plain_randomized")
    kinds = PairKinds({"a": "A", "b": "B", "c": "C"}, (("a", "b"),), "help")
    assert kinds.order == ("a", "b", "c") and kinds.label("zzz") == "zzz"
    assert kinds.compared_for("c") == ("a", "b"), "a kind of no comparison: the first"
    pair = JSAEPair(tiny_sae(16, 32, 4, None), tiny_sae(16, 32, 4, None), layer=0, kind="c")
    assert pair.kind == "c"
    for bad, match in (
        ({"A b": "x"}, "short lowercase name"),
        ({}, "at least one kind"),
    ):
        with pytest.raises(InputError, match=match):
            PairKinds(bad, (("a", "b"),) if bad else (), "help")
    with pytest.raises(InputError, match="two different kinds"):
        PairKinds({"a": "A"}, (("a", "a"),), "help")
    with pytest.raises(InputError, match="two different kinds"):
        PairKinds({"a": "A"}, (("a", "b"),), "help")
    with pytest.raises(InputError, match="one pair of kinds to compare"):
        PairKinds({"a": "A"}, (), "help")


def test_pair_kind_names_each_of_the_four_kinds():
    assert pair_kind(plain=False, randomized=False) == "jsae"
    assert pair_kind(plain=True, randomized=False) == "plain"
    assert pair_kind(plain=False, randomized=True) == "jsae_randomized"
    assert pair_kind(plain=True, randomized=True) == "plain_randomized"
    assert set(PAIR_KINDS) == {"jsae", "plain", "jsae_randomized", "plain_randomized"}


@pytest.mark.parametrize("k", [0, 33, -1, True, 2.0, None])
def test_k_outside_1_to_d_sae_is_refused_naming_the_sae(k):
    for what in ("input", "output"):
        sae = tiny_sae(16, 32, 4, None)
        sae.cfg.k = k
        saes = {"input": sae, "output": tiny_sae(16, 32, 4, None)}
        if what == "output":
            saes = {"input": tiny_sae(16, 32, 4, None), "output": sae}
        with pytest.raises(
            InputError,
            match=rf"The {what} SAE has k={k!r}; k must be a whole number from 1 to its d_sae=32",
        ):
            JSAEPair(saes["input"], saes["output"], layer=0)


@pytest.mark.parametrize("k", [1, 32])
def test_k_at_either_end_of_1_to_d_sae_is_accepted(k):
    pair = JSAEPair(tiny_sae(16, 32, k, None), tiny_sae(16, 32, k, None), layer=0)
    assert pair.k_in == pair.k_out == k


def test_the_last_layer_is_accepted_and_one_past_it_refused():
    model = tiny_model(n_layers=2)
    JSAEPair(tiny_sae(16, 32, 4, None), tiny_sae(16, 32, 4, None), layer=1).check_model(model)
    past = JSAEPair(tiny_sae(16, 32, 4, None), tiny_sae(16, 32, 4, None), layer=2)
    with pytest.raises(
        InputError, match=r"The pair is for layer 2, but the model has layers 0\.\.1"
    ):
        past.check_model(model)


def test_each_refused_sae_setting_is_named_with_its_fix():
    """The refusals name the SAE (input or output), the setting and what to do instead."""
    plain = StandardSAE(StandardSAEConfig(d_in=16, d_sae=32))
    with pytest.raises(
        UnsupportedError,
        match=r"^The output SAE is a StandardSAE; jsae needs sae-lens TopK SAEs "
        r"\(architecture 'topk'\)\.$",
    ):
        JSAEPair(tiny_sae(16, 32, 4, None), plain, layer=0)
    cases = [
        (
            "normalize_activations",
            "expected_average_only_in",
            r"^The input SAE uses normalize_activations='expected_average_only_in'; only 'none' "
            r"is supported\. Fold the normalisation into the weights first\.$",
        ),
        (
            "rescale_acts_by_decoder_norm",
            True,
            r"^The input SAE sets rescale_acts_by_decoder_norm; jsae supports plain TopK only\. "
            r"Fold the decoder norms into the encoder \(sae\.fold_W_dec_norm\(\)\) first\.$",
        ),
        (
            "reshape_activations",
            "hook_z",
            r"^The input SAE reshapes its input \('hook_z'\); MLP SAEs read d_model vectors\.$",
        ),
    ]
    for name, value, message in cases:
        sae = tiny_sae(16, 32, 4, None)
        setattr(sae.cfg, name, value)
        with pytest.raises(UnsupportedError, match=message):
            JSAEPair(sae, tiny_sae(16, 32, 4, None), layer=0)


def test_non_finite_weights_name_the_sae():
    sae = tiny_sae(16, 32, 4, None)
    with torch.no_grad():
        sae.W_enc[0, 0] = float("nan")
    with pytest.raises(SourceError, match="^The output SAE: the tensor 'W_enc' holds 1 NaN"):
        JSAEPair(tiny_sae(16, 32, 4, None), sae, layer=0)


def test_topk_activations_on_a_batch_of_rows_match_a_sort():
    """Any leading shape: the k largest of the last axis, largest first, ReLU applied
    (numpy's sort as the reference)."""
    pre = torch.randn(2, 3, 10)
    values, indices = topk_activations(pre, 4)
    order = np.argsort(-pre.numpy(), axis=-1, kind="stable")[..., :4]
    np.testing.assert_array_equal(indices.numpy(), order)
    expected = np.maximum(np.take_along_axis(pre.numpy(), order, -1), 0)
    np.testing.assert_array_equal(values.numpy(), expected)


def test_two_kinds_compared_with_each_other_are_a_valid_source_and_refusals_say_why():
    kinds = PairKinds({"a": "A", "b": "B"}, (("a", "b"),), "help")
    assert kinds.compared_for("b") == ("a", "b")
    for labels, compared, message in (
        ({}, (), r"^A source's pair kinds need at least one kind\.$"),
        ({"a": "A"}, (), r"^A source's pair kinds need one pair of kinds to compare\.$"),
        (
            {"a": "A", "b": "B"},
            (("a", "c"),),
            r"^Compared kinds \('a', 'c'\) must be two different kinds of a, b\.$",
        ),
        (
            {"A": "A"},
            (),
            r"^A pair kind is a short lowercase name \(letters, digits, _\), got 'A'; the "
            r"paper's kinds are jsae, plain, jsae_randomized, plain_randomized\.$",
        ),
    ):
        with pytest.raises(InputError, match=message):
            PairKinds(labels, compared, "help")
