"""Models: by TransformerLens name, or from a *model folder*.

A model folder holds ``config.json`` (a ``HookedTransformerConfig``), ``model.safetensors``
(its state dict) and a tokenizer saved with ``save_pretrained`` (``tokenizer.json`` +
``tokenizer_config.json``). Names load with ``HookedTransformer.from_pretrained``, where the
hub or a local HF cache is reachable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from jsae.errors import SourceError, first_line
from jsae.loading.files import load_state_exactly, read_json, read_safetensors, write_json

MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"
MODEL_TOKENIZER = "tokenizer.json"
UNSAVED_CONFIG_KEYS = ("device", "dtype", "n_params")
"""Config keys a model folder leaves out: set where it loads, or derived."""


def load_model(
    model: str | os.PathLike | HookedTransformer,
    device: str = "cpu",
    no_processing: bool = False,
) -> HookedTransformer:
    """A TransformerLens model: already loaded, from a model folder, or by name."""
    if isinstance(model, HookedTransformer):
        return model
    path = Path(model).expanduser()
    if path.is_dir():
        return load_model_folder(path, device=device)
    name = str(model)
    try:
        if no_processing:
            return HookedTransformer.from_pretrained_no_processing(name, device=device)
        return HookedTransformer.from_pretrained(name, device=device)
    except Exception as err:  # the hub raises many types: unknown name, no network, ...
        raise SourceError(
            f"Could not load the model {name!r}: {first_line(err)}. "
            "It must be a TransformerLens model name reachable on the model hub (or in the "
            f"local HF cache), or a local model folder ({MODEL_CONFIG}, {MODEL_WEIGHTS}, "
            f"{MODEL_TOKENIZER})."
        ) from None


def save_model_folder(model: HookedTransformer, path: str | os.PathLike) -> Path:
    """Write ``model`` as a model folder: config, state dict and tokenizer."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = {}
    for key, value in model.cfg.to_dict().items():
        if key in UNSAVED_CONFIG_KEYS:
            continue
        try:
            json.dumps(value)
        except TypeError:  # a value JSON cannot hold is left to the config's default
            continue
        cfg[key] = value
    write_json(cfg, path / MODEL_CONFIG)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, path / MODEL_WEIGHTS)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(path)
    return path


def load_model_folder(path: Path, device: str = "cpu") -> HookedTransformer:
    """Read a model folder written by ``save_model_folder``."""
    cfg_dict = read_json(path / MODEL_CONFIG)
    try:
        cfg = HookedTransformerConfig(**{**cfg_dict, "device": device})
    except (TypeError, ValueError, AssertionError) as err:
        raise SourceError(
            f"{path / MODEL_CONFIG} is not a HookedTransformerConfig: {err}"
        ) from None
    tokenizer = None
    if (path / MODEL_TOKENIZER).is_file():
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
        except Exception as err:  # tokenizers raises plain Exception subclasses
            raise SourceError(f"{path / MODEL_TOKENIZER} could not be read: {err}") from None
        tokenizer.add_bos_token = True
    try:
        model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    except Exception as err:  # TransformerLens raises what torch raises for impossible sizes
        raise SourceError(
            f"{path / MODEL_CONFIG} does not describe a model that can be built: {first_line(err)}"
        ) from None
    load_state_exactly(model, read_safetensors(path / MODEL_WEIGHTS), path / MODEL_WEIGHTS)
    if device != "cpu":
        model.to(device)
    model.eval()
    return model
