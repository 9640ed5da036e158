"""The pair kinds the bundled default ships: how each is trained, and what it is called.

Every layer gets one pair of every kind, trained on the same SAE split with the same seed and
data order at the demo's scale (:class:`jsae.demo.settings.DemoSettings`: d_sae, k, batch, the
layer's steps, learning rate, AuxK and dead window); a kind changes only the objective, λ and
the initialisation (:class:`jsae.train.PairTrainingConfig`):

* ``plain``: λ = 0, the research loss (MSE of both SAEs), with the decoder biases started at
  the first block's means and subtracted from the input (``b_dec_init="mean"``,
  ``apply_b_dec_to_input``): on this corpus that leaves 10% of the output features unfired on
  held-out text instead of 43% (``docs/training.md``);
* ``jsae``: the research code's objective and initialisation, λ = 0.5·k²/d_model = 1 (its
  authors' rule of thumb): the honest reference, whatever it yields at this scale;
* ``normalized``: the best variant of ``docs/training.md``'s table on layer 1, the authors' later
  scale-free penalty mean|J_t|/rms(J_t) at λ = 3 with ``plain``'s initialisation.

The bundle's JSAE kinds are the ones with λ > 0; ``DEMO_KINDS`` is what the source declares
(labels, the comparisons the JSAE-vs-plain page offers first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jsae.errors import InputError
from jsae.pair import PairKinds, check_kind

MEAN_INIT: tuple[tuple[str, Any], ...] = (("b_dec_init", "mean"), ("apply_b_dec_to_input", True))
"""The decoder biases start at the first block's means and are subtracted from the input."""


@dataclass(frozen=True)
class KindRecipe:
    """How the demo trains the pairs of one kind.

    Args:
        name: the kind's name (``jsae.pair.KIND_NAME``).
        label: how pickers and tables call it.
        jacobian_coefficients: λ, one value for all layers or one per layer.
        overrides: ``PairTrainingConfig`` fields set for this kind (objective, init ...),
            as ``(field, value)`` pairs.
    """

    name: str
    label: str
    jacobian_coefficients: float | tuple[float, ...]
    overrides: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        check_kind(self.name)
        values = self.jacobian_coefficients
        for value in values if isinstance(values, tuple) else (values,):
            if not value >= 0:
                raise InputError(f"Kind {self.name!r}: λ must be >= 0, got {value!r}.")

    def coefficient(self, layer: int) -> float:
        """λ of this kind's pair of ``layer``."""
        values = self.jacobian_coefficients
        return float(values[layer] if isinstance(values, tuple) else values)

    @property
    def penalized(self) -> bool:
        """Whether it is trained with the Jacobian penalty on some layer (a JSAE kind)."""
        values = self.jacobian_coefficients
        return any(v > 0 for v in (values if isinstance(values, tuple) else (values,)))


PLAIN = KindRecipe("plain", "Traditional SAEs", 0.0, MEAN_INIT)
JSAE = KindRecipe("jsae", "JSAEs, research objective", 1.0)
NORMALIZED = KindRecipe(
    "normalized",
    "JSAEs, normalized penalty",
    3.0,
    (("objective", "normalized"), *MEAN_INIT),
)
KINDS = (PLAIN, JSAE, NORMALIZED)
"""The bundled default's kinds, in the order they are trained."""


def declared_kinds(recipes: tuple[KindRecipe, ...]) -> PairKinds:
    """What a bundle of ``recipes`` declares: every kind's label, each JSAE kind compared with
    ``plain`` (the paper's comparison) and, when there are several, with the first JSAE kind."""
    names = [r.name for r in recipes]
    jsae_kinds = [r.name for r in recipes if r.penalized]
    compared = [(kind, PLAIN.name) for kind in jsae_kinds if PLAIN.name in names]
    compared += [(kind, jsae_kinds[0]) for kind in jsae_kinds[1:]]
    order = jsae_kinds + [n for n in names if n not in jsae_kinds]
    labels = {
        r.name: f"{r.label} ({_lambdas(r)})"
        for r in sorted(recipes, key=lambda r: order.index(r.name))
    }
    return PairKinds(
        labels,
        tuple(compared),
        "plain: two TopK SAEs trained without the Jacobian penalty. jsae: the research code's "
        "objective (MSE + λ·mean|J|) and initialisation at its authors' λ rule. normalized: the "
        "penalty divided by each token's RMS of J, so it cannot be lowered by shrinking the "
        "output code (docs/training.md).",
    )


def _lambdas(recipe: KindRecipe) -> str:
    """λ as a label shows it: one value, or one per layer."""
    values = recipe.jacobian_coefficients
    if isinstance(values, tuple):
        return "λ = " + " / ".join(f"{v:g}" for v in values)
    return f"λ = {values:g}"


DEMO_KINDS = declared_kinds(KINDS)
"""The pair kinds the bundled default declares in its ``source.json``."""
