import pytest
import torch

from jsae.errors import InputError, UnsupportedError
from jsae.pair import PAIR_KINDS, PAPER_KINDS, JSAEPair, PairKinds, topk_encode
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
    with pytest.raises(InputError, match="must read 'blocks.1.ln2.hook_normalized'"):
        JSAEPair(
            tiny_sae(16, 32, 4, "blocks.0.ln2.hook_normalized"),
            tiny_sae(16, 32, 4, "blocks.1.hook_mlp_out"),
            layer=1,
        )
    with pytest.raises(InputError, match="must read 'blocks.1.hook_mlp_out'"):
        JSAEPair(
            tiny_sae(16, 32, 4, "blocks.1.ln2.hook_normalized"),
            tiny_sae(16, 32, 4, "blocks.1.hook_resid_post"),
            layer=1,
        )
    wrong_width = JSAEPair(tiny_sae(8, 32, 4, None), tiny_sae(8, 32, 4, None), layer=1)
    with pytest.raises(InputError, match="d_in=8, but the model's d_model is 16"):
        wrong_width.check_model(model)
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
