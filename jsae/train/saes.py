"""The pair being trained: its initialisation and its unit-norm decoder rows.

Both SAEs are sae-lens ``TopKSAE`` modules (float32, on the model's device), initialised by
sae-lens under the config's seed (W_dec Kaiming-uniform, ``W_enc = W_dec.T``, zero biases),
then with unit-norm decoder rows. ``encoder_init`` ``decoder_transpose`` keeps sae-lens's
encoder, the transpose of the decoder *before* its rows were normalised, as the research code
does (``init_encoder_as_decoder_transpose`` before ``normalize_sae_decoder``: columns of norm
about √2); ``unit_decoder_transpose`` sets ``W_enc = W_dec.T`` after. After every optimizer
step each decoder row is rescaled to unit norm again.
"""

from __future__ import annotations

import torch
from sae_lens import TopKSAE, TopKSAEConfig
from transformer_lens import HookedTransformer

from jsae.pair import JSAEPair, hook_in_name, hook_out_name
from jsae.train.config import PairTrainingConfig


def new_pair(model: HookedTransformer, config: PairTrainingConfig) -> JSAEPair:
    """A freshly initialised pair (sae-lens init, unit-norm decoder rows, the encoder as
    ``config.encoder_init`` says)."""
    d_model = model.cfg.d_model
    saes = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for hook in (hook_in_name(config.layer), hook_out_name(config.layer)):
            cfg = TopKSAEConfig(
                d_in=d_model,
                d_sae=config.d_sae,
                k=config.k,
                apply_b_dec_to_input=config.apply_b_dec_to_input,
                device=str(model.cfg.device),
            )
            cfg.metadata.hook_name = hook
            cfg.metadata.model_name = model.cfg.model_name
            sae = TopKSAE(cfg).to(device=model.cfg.device, dtype=torch.float32)
            with torch.no_grad():
                sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True))
                if config.encoder_init == "unit_decoder_transpose":
                    sae.W_enc.copy_(sae.W_dec.T)
            saes.append(sae)
    return JSAEPair(saes[0], saes[1], layer=config.layer, kind=config.kind)


@torch.no_grad()
def normalize_decoder(sae: TopKSAE) -> None:
    """Rescale every decoder row to unit norm."""
    sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))
