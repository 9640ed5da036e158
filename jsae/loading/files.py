"""Reading the JSON and safetensors files every folder format is made of.

A missing file and a corrupt file are both ``SourceError``s that name the file, so whatever
format a folder is in, a broken one says which file to fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from jsae.errors import SourceError, first_line
from jsae.finite import check_finite_weights

DERIVED_BUFFERS = ("IGNORE", "mask", "rotary_sin", "rotary_cos")
"""TransformerLens buffers a model computes from its config: a state dict may have them or
not, depending on the TransformerLens version that wrote it."""


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SourceError(f"{path} is missing.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{path} is corrupt (not valid JSON: {err}).") from None
    if not isinstance(data, dict):
        raise SourceError(f"{path} must hold a JSON object.")
    return data


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors in the safetensors file ``path``, on the CPU; every one finite (derived
    buffers aside: a causal mask's fill is -inf on purpose)."""
    try:
        tensors = load_file(path)
    except FileNotFoundError:
        raise SourceError(f"{path} is missing.") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise SourceError(f"{path} is corrupt ({err}).") from None
    weights = {k: v for k, v in tensors.items() if not k.endswith(DERIVED_BUFFERS)}
    check_finite_weights(weights, str(path))
    return tensors


def load_state_exactly(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Load ``state`` into ``model``: every parameter and stored buffer, nothing missing and
    nothing extra (derived buffers aside), every shape right; else one ``SourceError``."""
    expected = model.state_dict()
    for key, tensor in state.items():
        if key in expected and tuple(tensor.shape) != tuple(expected[key].shape):
            raise SourceError(
                f"{where} does not fit the model: {key} has shape {tuple(tensor.shape)} there, "
                f"but the model's config makes it {tuple(expected[key].shape)}."
            )
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # anything the shape check above did not catch
        raise SourceError(f"{where} does not fit the model: {first_line(err)}") from None
    missing = [k for k in missing if not k.endswith(DERIVED_BUFFERS)]
    unexpected = [k for k in unexpected if not k.endswith(DERIVED_BUFFERS)]
    if missing or unexpected:
        raise SourceError(
            f"{where} does not fit the model: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}{' (and more)' if len(missing) > 3 or len(unexpected) > 3 else ''}."
        )


def write_json(data: dict[str, Any], path: Path) -> None:
    """Write a manifest or config, indented for people to read."""
    path.write_text(json.dumps(data, indent=2))
