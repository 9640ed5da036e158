"""How the ablation engine perturbs: the mode, the step s and the memory a chunk may use.

For each active input feature i the MLP input moves along the input SAE's decoder
direction, x' = x - s * W_dec_in[i], with s set by the mode: ``unit`` s = 1 (the research
notebook's), ``zero`` s = a_i (removes the feature), ``scale`` s = a chosen constant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from jsae.errors import InputError

MODES = ("unit", "zero", "scale")
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
"""The largest scale the engine accepts: it computes in float32."""

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(tokens_done, tokens_total)`` after each chunk."""


@dataclass(frozen=True)
class AblationConfig:
    """How to perturb, and how much memory a chunk of tokens may use.

    Args:
        mode: ``"unit"`` (s = 1), ``"zero"`` (s = a_i) or ``"scale"`` (s = ``scale``).
        scale: the perturbation size s in ``"scale"`` mode; ignored otherwise.
        include_bos: also ablate position 0 when it is the BOS token (off, as the notebook).
        memory_budget: bytes of working memory a chunk of tokens may take (about 1 GiB).
    """

    mode: str = "unit"
    scale: float = 1.0
    include_bos: bool = False
    memory_budget: int = 1 << 30

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"Mode must be one of {', '.join(MODES)}; got {self.mode!r}.")
        if self.mode == "scale":
            if isinstance(self.scale, bool) or not (
                isinstance(self.scale, int | float) and abs(self.scale) <= FLOAT32_MAX
            ):
                raise InputError(
                    f"The scale must be a finite number within float32's range "
                    f"(±{FLOAT32_MAX:.4g}), got {self.scale!r}."
                )
            if self.scale == 0:
                raise InputError(
                    "The scale must not be 0: s = 0 perturbs nothing (a zero step moves no "
                    "input feature), so nothing would move and the ratio would mean nothing. "
                    "Pick a non-zero s."
                )
        if (
            isinstance(self.memory_budget, bool)
            or not isinstance(self.memory_budget, int)
            or self.memory_budget <= 0
        ):
            raise InputError(
                f"The memory budget must be a positive whole number of bytes, got "
                f"{self.memory_budget!r}."
            )

    @property
    def step(self) -> float | None:
        """The step s: 1 in unit mode, ``scale`` in scale mode, None in zero mode (where
        s = a_i differs per connection)."""
        return {"unit": 1.0, "scale": float(self.scale)}.get(self.mode)

    def perturbation(self, in_act: Float[Tensor, "tokens k_in"]) -> Float[Tensor, "tokens k_in"]:
        """The step s along each active input feature's decoder direction."""
        if self.mode == "zero":
            return in_act
        s = 1.0 if self.mode == "unit" else float(self.scale)
        return torch.full_like(in_act, s)
