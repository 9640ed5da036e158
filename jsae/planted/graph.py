"""The planted graph: known input and output features and the sparse computation between them.

Every number here is built from ``PlantedSettings`` and its seed with numpy, nothing trained:

* **Directions.** The rows of the Sylvester Hadamard matrix of size d_model, divided by
  √d_model: an orthonormal basis whose entries are ±1/8 at d_model = 64, exact in binary.
  n_in of the rows other than the all-ones row (so every input direction sums to 0 and the
  LayerNorm's centring leaves it alone) are the input directions d_i, with random signs; n_out
  rows are the output directions g_j. Being orthonormal, each is its own dual: ⟨d_i, d_i'⟩ = δ.
* **Edges.** Each output feature j has ``parents`` distinct input parents pa(j), each with a
  weight w_ij, a multiple of 1/8 of magnitude 0.5–1.5, negative with probability
  ``negative_share``; every output has the bias b (a multiple of 1/16).
* **Tokens.** Token t writes x_t = Σ_i a_ti d_i with exactly k_in active input features, whose
  coefficients are the k_in values 0.5, 0.625, … in a random order (so |x_t|, and with it the
  LayerNorm's scale, is the same for every token). A token is drawn again until exactly k_out
  output features are active, h_tj = relu(Σ_i w_ij a_ti + b_j) > 0, and every output's
  pre-activation is at least ``margin`` away from 0.

With coefficients, weights and directions all short binary fractions, W_in = Σ w_ij d_i and
every product the Jacobian is built from are exact in float32: off the true edges J is exactly
0, on them exactly w_ij (ReLU′ is 1 on an active output).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from jaxtyping import Float, Int
from scipy.linalg import hadamard

from jsae.errors import InputError

WEIGHT_STEP = 1 / 8
"""Weights are multiples of this, between ``WEIGHT_RANGE``'s ends in magnitude."""
WEIGHT_RANGE = (0.5, 1.5)
COEFFICIENT_START, COEFFICIENT_STEP = 0.5, 1 / 8
"""A token's k_in coefficients are COEFFICIENT_START + r · COEFFICIENT_STEP, r = 0 … k_in − 1."""
MAX_DRAWS = 2000
"""Candidate tokens drawn per token before the settings are called impossible."""


@dataclass(frozen=True)
class PlantedSettings:
    """The planted model's shape and its seed (the defaults are the bundled ``planted``).

    Args:
        seed: every random choice below.
        d_model: a power of two above n_in (the Hadamard basis).
        n_in, n_out: input and output features (n_out is the MLP's d_mlp: unit j is output j).
        k_in: active input features per token; k_out: active output features per token.
        parents: input parents per output feature.
        negative_share: the chance that an edge's weight is negative (so perturbing an input
            raises some outputs, which then compete for the output SAE's top k).
        bias: every output feature's bias.
        margin: every output pre-activation of every token is at least this far from 0.
        vocab: tokens (the byte tokenizer's 257).
        n_ctx: the model's context.
    """

    seed: int = 0
    d_model: int = 64
    n_in: int = 48
    n_out: int = 48
    k_in: int = 8
    k_out: int = 15
    parents: int = 3
    negative_share: float = 1 / 3
    bias: float = -0.25
    margin: float = 1 / 16
    vocab: int = 257
    n_ctx: int = 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise InputError(f"PlantedSettings.{f.name} must be a whole number, got {value!r}.")
        d = self.d_model
        if d < 2 or d & (d - 1) or d <= self.n_in or d < self.n_out:
            raise InputError(
                f"PlantedSettings.d_model must be a power of two above n_in ({self.n_in}) and at "
                f"least n_out ({self.n_out}), got {d}."
            )
        if not (1 <= self.k_in <= self.n_in and 1 <= self.k_out <= self.n_out):
            raise InputError("PlantedSettings needs 1 ≤ k_in ≤ n_in and 1 ≤ k_out ≤ n_out.")
        if not 1 <= self.parents <= self.n_in:
            raise InputError(f"PlantedSettings.parents must be 1 … n_in, got {self.parents}.")
        if not (0 <= self.negative_share <= 1 and self.margin > 0 and self.vocab >= 1):
            raise InputError(
                "PlantedSettings needs 0 ≤ negative_share ≤ 1, margin > 0 and vocab ≥ 1."
            )

    @property
    def coefficients(self) -> np.ndarray:
        """The k_in coefficient values every token's active inputs take, in some order."""
        return COEFFICIENT_START + COEFFICIENT_STEP * np.arange(self.k_in)


@dataclass(frozen=True)
class PlantedGraph:
    """The planted features, edges and tokens (see the module docstring).

    Args:
        settings: what it was built from.
        inputs: the input directions d_i, orthonormal and each summing to 0.
        outputs: the output directions g_j, orthonormal.
        weights: w_ij, 0 where i is no parent of j.
        bias: b_j.
        coefficients: a_ti, each token's input-feature coefficients (k_in non-zero per row).
    """

    settings: PlantedSettings
    inputs: Float[np.ndarray, "n_in d_model"]
    outputs: Float[np.ndarray, "n_out d_model"]
    weights: Float[np.ndarray, "n_in n_out"]
    bias: Float[np.ndarray, " n_out"]
    coefficients: Float[np.ndarray, "vocab n_in"]

    @property
    def embedding(self) -> Float[np.ndarray, "vocab d_model"]:
        """x_t = Σ_i a_ti d_i: each token's MLP input."""
        return self.coefficients @ self.inputs

    def pre_activations(self, coefficients: np.ndarray) -> np.ndarray:
        """Σ_i w_ij a_i + b_j for coefficient rows a."""
        return coefficients @ self.weights + self.bias

    def activations(self, coefficients: np.ndarray) -> np.ndarray:
        """h_j = relu(Σ_i w_ij a_i + b_j)."""
        return np.maximum(self.pre_activations(coefficients), 0.0)

    @property
    def edges(self) -> pd.DataFrame:
        """One row per true edge: ``in_feature`` i, ``out_feature`` j, ``weight`` w_ij."""
        i, j = np.nonzero(self.weights)
        return pd.DataFrame({"in_feature": i, "out_feature": j, "weight": self.weights[i, j]})


def hadamard_basis(d_model: int) -> Float[np.ndarray, "d_model d_model"]:
    """The Sylvester Hadamard matrix over √d_model: orthonormal rows, row 0 all equal."""
    return hadamard(d_model).astype(np.float64) / np.sqrt(d_model)


def planted_graph(settings: PlantedSettings | None = None) -> PlantedGraph:
    """The graph of ``settings`` (the default settings when None); the same for the same
    settings on every machine (numpy's ``default_rng`` streams are stable)."""
    s = settings or PlantedSettings()
    rng = np.random.default_rng([s.seed, 21])
    basis = hadamard_basis(s.d_model)
    rows_in = 1 + rng.choice(s.d_model - 1, s.n_in, replace=False)  # never the all-ones row
    inputs = basis[rows_in] * rng.choice([-1.0, 1.0], size=(s.n_in, 1))
    outputs = basis[rng.choice(s.d_model, s.n_out, replace=False)]
    outputs = outputs * rng.choice([-1.0, 1.0], size=(s.n_out, 1))
    weights = np.zeros((s.n_in, s.n_out))
    steps = np.arange(WEIGHT_RANGE[0], WEIGHT_RANGE[1] + WEIGHT_STEP / 2, WEIGHT_STEP)
    for j in range(s.n_out):
        parents = rng.choice(s.n_in, s.parents, replace=False)
        sign = np.where(rng.random(s.parents) < s.negative_share, -1.0, 1.0)
        weights[parents, j] = sign * rng.choice(steps, s.parents)
    bias = np.full(s.n_out, s.bias)
    graph = PlantedGraph(s, inputs, outputs, weights, bias, np.zeros((s.vocab, s.n_in)))
    coefficients = _draw_tokens(graph, rng)
    return PlantedGraph(s, inputs, outputs, weights, bias, coefficients)


def _draw_tokens(graph: PlantedGraph, rng: np.random.Generator) -> np.ndarray:
    """Each token's coefficients, drawn until exactly k_out outputs are active and every
    output pre-activation is at least ``margin`` from 0 (see the module docstring)."""
    s = graph.settings
    rows: list[np.ndarray] = []
    for _ in range(MAX_DRAWS):
        active: Int[np.ndarray, "batch k_in"] = np.argsort(rng.random((s.vocab, s.n_in)), -1)
        active = active[:, : s.k_in]
        candidates = np.zeros((s.vocab, s.n_in))
        values = s.coefficients[np.argsort(rng.random((s.vocab, s.k_in)), -1)]
        np.put_along_axis(candidates, active, values, axis=-1)
        pre = graph.pre_activations(candidates)
        keep = ((pre > 0).sum(-1) == s.k_out) & (np.abs(pre).min(-1) >= s.margin)
        rows.extend(candidates[keep])
        if len(rows) >= s.vocab:
            return np.stack(rows[: s.vocab])
    raise InputError(
        f"No {s.vocab} tokens with exactly k_out = {s.k_out} active outputs were found in "
        f"{MAX_DRAWS} draws each; choose a k_out nearer the typical number, or a smaller margin."
    )
