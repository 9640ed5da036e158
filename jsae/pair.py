"""A JSAE pair: two sae-lens TopK SAEs around the MLP of one transformer block.

sae-lens's ``TopKSAE.encode`` takes the top k of the pre-activations, applies ReLU to the
kept values and writes zeros elsewhere: exactly the research code's semantics. The one
sae-lens option that would change them, ``rescale_acts_by_decoder_norm`` (top-k chosen on
pre-activations scaled by decoder norms), did not exist in the research code and is refused,
as is any input normalisation other than ``"none"``. ``topk_encode`` below returns the same
activations as ``sae.encode`` plus the indices of the k selected features, sorted by
activation (largest first), which the Jacobian and the ablation engine index by.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from sae_lens import TopKSAE
from torch import Tensor
from transformer_lens import HookedTransformer

from jsae.errors import InputError, UnsupportedError
from jsae.finite import check_finite_weights

RANDOMIZED = "_randomized"
"""Suffix of the randomized-LLM controls' kinds: pairs trained on the model with its weight
matrices re-drawn at random (the research code's ``randomize_llm_weights``)."""
PAIR_KINDS = ("jsae", "plain", "jsae" + RANDOMIZED, "plain" + RANDOMIZED)
"""The paper's kinds, in its order: ``jsae``, trained with the Jacobian penalty; ``plain``,
the same training without it (λ = 0, the paper's "traditional SAEs"); each also as a
randomized-LLM control. Source folders on disk hold these kinds; a built-in source may declare
its own (``PairKinds``)."""
DEFAULT_KIND = PAIR_KINDS[0]
"""The pair kind used when none is named: the JSAE (trained with the Jacobian penalty)."""
KIND_LABELS = {
    "jsae": "JSAEs",
    "plain": "Traditional SAEs",
    "jsae" + RANDOMIZED: "JSAEs (Randomized LLM)",
    "plain" + RANDOMIZED: "Traditional SAEs (Randomized LLM)",
}
"""Each kind as the paper's figures label it."""
KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
"""What a pair kind may be called: it goes into URLs, file names and table columns."""


def check_kind(kind: object) -> str:
    """``kind`` when it is a pair kind's name (``KIND_NAME``), else an ``InputError``."""
    if not isinstance(kind, str) or not KIND_NAME.fullmatch(kind):
        raise InputError(
            f"A pair kind is a short lowercase name (letters, digits, _), got {kind!r}; "
            f"the paper's kinds are {', '.join(PAIR_KINDS)}."
        )
    return kind


@dataclass(frozen=True)
class PairKinds:
    """The pair kinds a source offers: the one place a source names them.

    Args:
        labels: each kind's label, in the order pickers list the kinds.
        compared: the pairs of kinds set side by side (the JSAE-vs-plain page's), the
            reference kind first; a kind of none of them is compared as the first.
        help: what the kinds are, in a sentence or two (the kind picker's help).
    """

    labels: Mapping[str, str]
    compared: tuple[tuple[str, str], ...]
    help: str

    def __post_init__(self) -> None:
        if not self.labels:
            raise InputError("A source's pair kinds need at least one kind.")
        for kind in self.labels:
            check_kind(kind)
        for pair in self.compared:
            if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(self.labels):
                raise InputError(
                    f"Compared kinds {pair!r} must be two different kinds of "
                    f"{', '.join(self.labels)}."
                )
        if not self.compared:
            raise InputError("A source's pair kinds need one pair of kinds to compare.")

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(self.labels)

    def label(self, kind: str) -> str:
        """``kind``'s label (the kind itself when it has none)."""
        return self.labels.get(kind, kind)

    def compared_for(self, kind: str) -> tuple[str, str]:
        """The two kinds to set side by side for a run of ``kind``: the comparison that
        holds it, else the first."""
        return next((pair for pair in self.compared if kind in pair), self.compared[0])


PAPER_KINDS = PairKinds(
    KIND_LABELS,
    (("jsae", "plain"), ("jsae" + RANDOMIZED, "plain" + RANDOMIZED)),
    "JSAEs: trained with the Jacobian sparsity penalty. Traditional SAEs: the same pair of TopK "
    "SAEs trained without it (λ = 0). (Randomized LLM): the paper's control, a pair trained "
    "and analysed on the model with its weight matrices re-drawn at random.",
)
"""The paper's kinds (``PAIR_KINDS``): what every source on disk offers."""


def pair_kind(plain: bool, randomized: bool) -> str:
    """The kind of a pair trained with (``plain`` False) or without the Jacobian penalty, on
    the real or the randomized model."""
    return ("plain" if plain else "jsae") + (RANDOMIZED if randomized else "")


def is_randomized(kind: str) -> bool:
    """Whether pairs of ``kind`` read a randomized copy of the model, not the model itself."""
    return kind.endswith(RANDOMIZED)


def hook_in_name(layer: int) -> str:
    """The MLP input of block ``layer``: what the input SAE reads."""
    return f"blocks.{layer}.ln2.hook_normalized"


def hook_out_name(layer: int) -> str:
    """The MLP output of block ``layer``: what the output SAE reads."""
    return f"blocks.{layer}.hook_mlp_out"


def check_topk_sae(sae: TopKSAE, what: str) -> None:
    """Refuse sae-lens settings whose encode differs from the research code's TopK, a ``k``
    outside 1..d_sae, and weights holding NaN or infinity."""
    if not isinstance(sae, TopKSAE):
        raise UnsupportedError(
            f"The {what} SAE is a {type(sae).__name__}; jsae needs sae-lens TopK SAEs "
            "(architecture 'topk')."
        )
    k, d_sae = sae.cfg.k, sae.cfg.d_sae
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d_sae:
        raise InputError(
            f"The {what} SAE has k={k!r}; k must be a whole number from 1 to its d_sae={d_sae}."
        )
    check_finite_weights(dict(sae.named_parameters()), f"The {what} SAE")
    if sae.cfg.normalize_activations != "none":
        raise UnsupportedError(
            f"The {what} SAE uses normalize_activations={sae.cfg.normalize_activations!r}; "
            "only 'none' is supported. Fold the normalisation into the weights first."
        )
    if sae.cfg.rescale_acts_by_decoder_norm:
        raise UnsupportedError(
            f"The {what} SAE sets rescale_acts_by_decoder_norm; jsae supports plain TopK "
            "only. Fold the decoder norms into the encoder (sae.fold_W_dec_norm()) first."
        )
    if sae.cfg.reshape_activations != "none":
        raise UnsupportedError(
            f"The {what} SAE reshapes its input ({sae.cfg.reshape_activations!r}); "
            "MLP SAEs read d_model vectors."
        )


def sae_pre_activations(sae: TopKSAE, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
    """The encoder's pre-activations, computed as ``TopKSAE.encode`` does."""
    return sae.process_sae_in(x) @ sae.W_enc + sae.b_enc


def topk_activations(
    pre: Float[Tensor, "... d_sae"], k: int
) -> tuple[Float[Tensor, "... k"], Int[Tensor, "... k"]]:
    """ReLU of the ``k`` largest pre-activations and their indices, largest first.

    Differentiable in ``pre``: training keeps the pre-activations for its AuxK term, which
    takes its own top k among the dead features."""
    values, indices = torch.topk(pre, k=k, dim=-1, sorted=True)
    return values.relu(), indices


def topk_encode(
    sae: TopKSAE, x: Float[Tensor, "... d_in"]
) -> tuple[Float[Tensor, "... k"], Int[Tensor, "... k"]]:
    """Activations and indices of the k active features, largest activation first."""
    return topk_activations(sae_pre_activations(sae, x), sae.cfg.k)


@dataclass
class JSAEPair:
    """Two TopK SAEs around the MLP of block ``layer``.

    Args:
        sae_in: reads the MLP input, ``blocks.{layer}.ln2.hook_normalized``.
        sae_out: reads the MLP output, ``blocks.{layer}.hook_mlp_out``.
        layer: the transformer block whose MLP the pair surrounds.
        kind: ``"jsae"`` (trained with the Jacobian penalty), ``"plain"`` (without), or
            another kind its source declares (``PairKinds``).
    """

    sae_in: TopKSAE
    sae_out: TopKSAE
    layer: int
    kind: str = "jsae"

    def __post_init__(self) -> None:
        check_topk_sae(self.sae_in, "input")
        check_topk_sae(self.sae_out, "output")
        check_kind(self.kind)
        for sae, expected, what in (
            (self.sae_in, self.hook_in, "input"),
            (self.sae_out, self.hook_out, "output"),
        ):
            hook = sae.cfg.metadata.hook_name
            if hook is not None and hook != expected:
                raise InputError(
                    f"The {what} SAE of layer {self.layer} reads {hook!r}, but a JSAE pair's "
                    f"{what} SAE must read {expected!r} (this layer's MLP {what})."
                )

    @property
    def hook_in(self) -> str:
        return hook_in_name(self.layer)

    @property
    def hook_out(self) -> str:
        return hook_out_name(self.layer)

    @property
    def k_in(self) -> int:
        return self.sae_in.cfg.k

    @property
    def k_out(self) -> int:
        return self.sae_out.cfg.k

    @property
    def d_sae_in(self) -> int:
        return self.sae_in.cfg.d_sae

    @property
    def d_sae_out(self) -> int:
        return self.sae_out.cfg.d_sae

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> JSAEPair:
        """Move both SAEs to ``device`` and/or cast them to ``dtype``, in place (as
        ``torch.nn.Module.to``); returns the pair."""
        changes = {"device": device, "dtype": dtype}
        changes = {key: value for key, value in changes.items() if value is not None}
        if changes:
            for sae in (self.sae_in, self.sae_out):
                sae.to(**changes)
        return self

    def fit_to(self, model: HookedTransformer) -> None:
        """Put the pair where ``model``'s MLP computes, in its dtype (``to``, in place), with
        a one-line warning when that changes anything: a bfloat16 pair on a float32 model
        computes in float32."""
        target = model.blocks[self.layer].mlp.W_in
        now = {(sae.W_enc.dtype, sae.W_enc.device) for sae in (self.sae_in, self.sae_out)}
        if now == {(target.dtype, target.device)}:
            return
        was = " and ".join(sorted(f"{dtype} on {device}" for dtype, device in now))
        warnings.warn(
            f"The layer {self.layer} pair ({was}) was cast to the model's {target.dtype} on "
            f"{target.device}, in place; pair.to(device=..., dtype=...) does it beforehand.",
            stacklevel=3,
        )
        self.to(device=target.device, dtype=target.dtype)

    def check_model(self, model: HookedTransformer) -> None:
        """Refuse a pair that does not fit ``model``."""
        if not 0 <= self.layer < model.cfg.n_layers:
            raise InputError(
                f"The pair is for layer {self.layer}, but the model has layers "
                f"0..{model.cfg.n_layers - 1}."
            )
        for sae, what in ((self.sae_in, "input"), (self.sae_out, "output")):
            if sae.cfg.d_in != model.cfg.d_model:
                raise InputError(
                    f"The {what} SAE of layer {self.layer} has d_in={sae.cfg.d_in}, but the "
                    f"model's d_model is {model.cfg.d_model}: the SAE belongs to another model."
                )
