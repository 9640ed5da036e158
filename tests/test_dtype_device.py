"""dtype and device: ``JSAEPair.to``, a pair in another dtype than the model cast to the
model's with one warning (reference: the same weights cast to float32 by hand, which must
give the same table exactly), and ``ablate(..., device=...)``."""

import copy
import warnings

import pandas as pd
import pytest
import torch

from jsae.ablation import ablate
from jsae.analysis import analyse
from jsae.pair import JSAEPair
from jsae.sandwich import Sandwich
from tests.helpers import tiny_model, tiny_pair

PROMPT = "The quick brown fox jumps over the lazy dog."


def copy_pair(pair: JSAEPair, dtype: torch.dtype) -> JSAEPair:
    """A fresh pair with ``pair``'s weights rounded to ``dtype``, as float32."""
    saes = [type(sae)(copy.deepcopy(sae.cfg)) for sae in (pair.sae_in, pair.sae_out)]
    out = JSAEPair(*saes, layer=pair.layer)
    for mine, theirs in ((out.sae_in, pair.sae_in), (out.sae_out, pair.sae_out)):
        state = {k: v.to(dtype).float() for k, v in theirs.state_dict().items()}
        mine.load_state_dict(state)
    return out


def test_pair_to_casts_both_saes_in_place():
    pair = tiny_pair(tiny_model(), layer=1)
    assert pair.to(dtype=torch.bfloat16) is pair
    for sae in (pair.sae_in, pair.sae_out):
        assert sae.W_enc.dtype == torch.bfloat16 and sae.cfg.dtype == "bfloat16"
    pair.to(device="cpu")
    assert pair.sae_in.W_enc.device.type == "cpu" and pair.sae_in.W_enc.dtype == torch.bfloat16


def test_a_bf16_pair_on_an_fp32_model_is_cast_with_one_warning():
    model = tiny_model()
    original = tiny_pair(model, layer=1)
    reference = copy_pair(original, torch.bfloat16)  # bf16-rounded weights, float32
    pair = copy_pair(original, torch.bfloat16).to(dtype=torch.bfloat16)
    with pytest.warns(
        UserWarning, match=r"torch.bfloat16 on cpu\) was cast to the model's torch.float32"
    ) as seen:
        result = ablate(model, pair, PROMPT)
    assert len([w for w in seen if "was cast" in str(w.message)]) == 1
    assert pair.sae_in.W_enc.dtype == torch.float32  # in place, as the warning says
    pd.testing.assert_frame_equal(result.table, ablate(model, reference, PROMPT).table)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cast once: the analysis runs without a warning
        analyse(model, pair, result, n_bootstrap=0)


def test_a_pair_already_fitting_gives_no_warning():
    model = tiny_model()
    pair = tiny_pair(model, layer=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Sandwich(model, pair)


def test_ablate_on_a_device_moves_model_and_pair():
    model = tiny_model()
    pair = tiny_pair(model, layer=1)
    expected = ablate(model, pair, PROMPT).table
    pd.testing.assert_frame_equal(ablate(model, pair, PROMPT, device="cpu").table, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ablate_on_cuda_matches_the_cpu():
    model = tiny_model()
    pair = tiny_pair(model, layer=1)
    expected = ablate(model, pair, PROMPT).table
    on_gpu = ablate(model, pair, PROMPT, device="cuda")
    assert model.cfg.device.startswith("cuda") and pair.sae_in.W_enc.is_cuda
    got = on_gpu.table
    for column in ("position", "in_feature", "out_feature"):
        assert (got[column] == expected[column]).all()
    for column in ("jacobian", "diff", "predicted"):
        torch.testing.assert_close(
            torch.tensor(got[column].to_numpy()),
            torch.tensor(expected[column].to_numpy()),
            rtol=1e-4,
            atol=1e-5,
        )
