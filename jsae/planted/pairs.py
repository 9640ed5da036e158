"""The planted model's pairs: right by construction, and wrong in known ways.

Each is two sae-lens ``TopKSAE``s around block 0's MLP, built from the planted directions
(``PlantedGraph``), with zero biases; an encoder is the pseudo-inverse of its decoder (the
dual directions), so a token's MLP input encodes to exactly the coefficients its decoder
writes it with, and its MLP output to the h_j:

* ``true``: the decoders are the planted directions d_i and g_j, k = k_in and k_out (every
  token's active features, exactly). J[j, i] = relu′(pre_j)·w_ij = w_ij on a true edge, 0 off.
* ``rotated``: the same subspaces in a random orthonormal basis (decoder rows Q·D for a random
  rotation Q of the n_in features, likewise for the outputs), the same k. The computation is
  as sparse as before, but not in this basis: every feature mixes many planted ones, and so
  does the Jacobian.
* ``noisy``: each decoder direction tilted away from its planted one to cosine
  ``NOISY_COSINE``, towards a random direction orthogonal to it; the same k.
* ``small_k``: the planted directions with k = ``SMALL_K_SHARE`` of k_in and k_out, so the
  weakest active features are forced out of the top k and compete to re-enter it.
"""

from __future__ import annotations

import numpy as np
import torch
from jaxtyping import Float
from sae_lens import TopKSAE, TopKSAEConfig

from jsae.pair import JSAEPair, PairKinds, hook_in_name, hook_out_name
from jsae.planted.graph import PlantedGraph
from jsae.planted.model import LAYER

NOISY_COSINE = 0.95
"""The ``noisy`` pair's decoder directions lie at this cosine (18°) from the planted ones."""
SMALL_K_SHARE = 0.5
"""The ``small_k`` pair keeps this share of the active features (rounded down, at least 1)."""
PLANTED_KINDS = PairKinds(
    {
        "true": "True features",
        "rotated": "Rotated basis",
        "noisy": f"Noisy directions (cos {NOISY_COSINE:g})",
        "small_k": "Too small k",
    },
    (("true", "rotated"),),
    "Pairs built from the planted model's own features. True features: the decoders are the "
    "planted directions (sound by construction). Rotated basis: the same subspaces in a random "
    "basis (a dense Jacobian over a sparse computation). Noisy directions: each tilted to "
    f"cosine {NOISY_COSINE:g}. Too small k: the true directions, half the active features.",
)
"""The planted source's kinds; its comparison page sets ``true`` beside ``rotated``."""


def topk_sae(decoder: Float[np.ndarray, "d_sae d_model"], k: int, hook_name: str) -> TopKSAE:
    """A TopK SAE with this decoder, its pseudo-inverse as encoder and zero biases."""
    d_sae, d_model = decoder.shape
    cfg = TopKSAEConfig(d_in=d_model, d_sae=d_sae, k=k, apply_b_dec_to_input=False)
    cfg.metadata.hook_name = hook_name
    sae = TopKSAE(cfg)
    with torch.no_grad():
        sae.W_dec.copy_(torch.as_tensor(decoder, dtype=torch.float32))
        sae.W_enc.copy_(torch.as_tensor(np.linalg.pinv(decoder), dtype=torch.float32))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def random_rotation(n: int, rng: np.random.Generator) -> Float[np.ndarray, "n n"]:
    """A random orthogonal matrix (Haar: QR of a Gaussian with the signs of R's diagonal)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def tilted(
    directions: Float[np.ndarray, "n d_model"], cosine: float, rng: np.random.Generator
) -> Float[np.ndarray, "n d_model"]:
    """Each unit row moved to ``cosine`` with itself, towards a random unit direction
    orthogonal to it."""
    noise = rng.standard_normal(directions.shape)
    noise -= (noise * directions).sum(-1, keepdims=True) * directions
    noise /= np.linalg.norm(noise, axis=-1, keepdims=True)
    return cosine * directions + np.sqrt(1 - cosine**2) * noise


def planted_pairs(graph: PlantedGraph) -> dict[str, dict[int, JSAEPair]]:
    """Every kind of ``PLANTED_KINDS`` as ``{kind: {LAYER: pair}}`` (see the module
    docstring); deterministic in the graph's seed."""
    s = graph.settings
    d_in, d_out = graph.inputs, graph.outputs
    small = (max(1, int(s.k_in * SMALL_K_SHARE)), max(1, int(s.k_out * SMALL_K_SHARE)))
    decoders = {
        "true": (d_in, d_out, s.k_in, s.k_out),
        "rotated": (
            random_rotation(s.n_in, np.random.default_rng([s.seed, 22, 0])) @ d_in,
            random_rotation(s.n_out, np.random.default_rng([s.seed, 22, 1])) @ d_out,
            s.k_in,
            s.k_out,
        ),
        "noisy": (
            tilted(d_in, NOISY_COSINE, np.random.default_rng([s.seed, 23, 0])),
            tilted(d_out, NOISY_COSINE, np.random.default_rng([s.seed, 23, 1])),
            s.k_in,
            s.k_out,
        ),
        "small_k": (d_in, d_out, *small),
    }
    return {
        kind: {
            LAYER: JSAEPair(
                topk_sae(dec_in, k_in, hook_in_name(LAYER)),
                topk_sae(dec_out, k_out, hook_out_name(LAYER)),
                layer=LAYER,
                kind=kind,
            )
        }
        for kind, (dec_in, dec_out, k_in, k_out) in decoders.items()
    }
