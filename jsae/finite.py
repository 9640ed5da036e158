"""Refusing NaN and infinity: in weights when they load, in activations while a run computes.

A NaN encoder column is always "active" under top-k (``torch.topk`` ranks NaN above every
number) and an infinite weight turns everything it touches into NaN, while a summary of the
rest still looks normal. So weights are checked once, when a file is read or a pair is built,
and a run checks what each chunk of tokens computed (one reduction per chunk, against the
chunk's far larger matrix products).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from jsae.errors import NumericError, SourceError


def non_finite(tensor: Tensor) -> int:
    """How many entries of ``tensor`` are NaN or infinite (0 for integer tensors)."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return 0
    return int((~torch.isfinite(tensor)).sum())


def check_finite_weights(tensors: Mapping[str, Tensor], where: str) -> None:
    """``SourceError`` naming the first tensor holding NaN or infinite values."""
    for name, tensor in tensors.items():
        bad = non_finite(tensor)
        if bad:
            raise SourceError(
                f"{where}: the tensor {name!r} holds {bad:,} NaN or infinite values (of "
                f"{tensor.numel():,}). The weights are damaged (a diverged training run?) and "
                "would give meaningless numbers; jsae does not load them."
            )


def check_finite_activations(parts: Iterable[tuple[str, Tensor]], where: str) -> None:
    """``NumericError`` when any of ``parts`` (name, tensor) holds NaN or infinity; one
    device synchronisation when all are finite."""
    parts = list(parts)
    if bool(torch.stack([torch.isfinite(t).all() for _, t in parts]).all()):
        return
    name = next(name for name, t in parts if non_finite(t))
    raise NumericError(
        f"NaN or infinite values appeared in {name} {where}: the computation overflowed "
        "(a very large --scale, or a model or pair that does not fit this input), so the run "
        "stops instead of reporting meaningless numbers."
    )
