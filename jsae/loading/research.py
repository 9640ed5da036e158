"""The research code's pair folder: ``cfg.json`` + ``sae_weights.safetensors``.

The weights file holds both SAEs of the pair: ``_W_enc`` [d_in, d_sae], ``_b_enc`` [d_sae],
``_W_dec`` [d_sae, d_in], ``_b_dec`` [d_in] for the input SAE (reading the MLP input) and the
same keys with the suffix ``_out`` for the output SAE (reading the MLP output). Keys without
the leading underscore are accepted too. Both SAEs are TopK with one ``k``.

A cfg with ``randomize_llm_weights`` ships the randomized model's state dict beside the
pair, as one more ``.safetensors`` file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from sae_lens import TopKSAE, TopKSAEConfig
from safetensors.torch import save_file
from transformer_lens import HookedTransformer

from jsae.errors import InputError, SourceError, UnsupportedError, first_line
from jsae.loading.files import read_json, read_safetensors, write_json
from jsae.pair import JSAEPair, hook_in_name, hook_out_name

RESEARCH_CFG = "cfg.json"
RESEARCH_WEIGHTS = "sae_weights.safetensors"
RESEARCH_KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")
OUT_SUFFIX = "_out"
"""Suffix of the output SAE's weight keys; the input SAE's have none."""


def load_research_pair(
    path: Path, device: str = "cpu", kind: str | None = None
) -> tuple[JSAEPair, dict[str, Any]]:
    """Read the research code's pair folder; returns the pair and its cfg.

    Unknown cfg keys are ignored. The kind is ``"plain"`` when the cfg records a zero
    ``jacobian_coefficient``, else ``"jsae"`` (unless ``kind`` says).
    """
    cfg = read_json(path / RESEARCH_CFG)
    weights = read_safetensors(path / RESEARCH_WEIGHTS)
    k, layer = _check_cfg(cfg, path)
    saes = []
    for suffix, hook in (("", hook_in_name(layer)), (OUT_SUFFIX, hook_out_name(layer))):
        saes.append(
            _topk_sae(
                _sae_weights(weights, suffix, path),
                k=k,
                hook_name=hook,
                apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", False)),
                model_name=cfg.get("model_name"),
                device=device,
                where=path,
            )
        )
    if kind is None:
        kind = "plain" if cfg.get("jacobian_coefficient", None) == 0 else "jsae"
    return JSAEPair(saes[0], saes[1], layer=layer, kind=kind), cfg


def save_research_pair(
    pair: JSAEPair,
    path: str | os.PathLike,
    model_name: str,
    extra_cfg: dict[str, Any] | None = None,
) -> Path:
    """Write ``pair`` in the research code's folder format."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights = {}
    for suffix, sae in (("", pair.sae_in), (OUT_SUFFIX, pair.sae_out)):
        for key in RESEARCH_KEYS:
            weights[f"_{key}{suffix}"] = getattr(sae, key).detach().float().contiguous().cpu()
    if pair.k_in != pair.k_out:
        raise UnsupportedError("The research format stores one k for both SAEs.")
    cfg = {
        "architecture": "standard",
        "d_in": pair.sae_in.cfg.d_in,
        "d_sae": pair.d_sae_in,
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": pair.k_in},
        "hook_name": pair.hook_in,
        "hook_layer": pair.layer,
        "model_name": model_name,
        "apply_b_dec_to_input": bool(pair.sae_in.cfg.apply_b_dec_to_input),
        "normalize_activations": "none",
        "is_pair": True,
        "randomize_llm_weights": False,
        "dtype": "float32",
        "device": "cpu",
    }
    cfg.update(extra_cfg or {})
    save_file(weights, path / RESEARCH_WEIGHTS)
    write_json(cfg, path / RESEARCH_CFG)
    return path


def load_randomized_weights(model: HookedTransformer, path: Path) -> None:
    """Load the randomized model's state dict shipped beside a research pair."""
    candidates = sorted(p for p in path.glob("*.safetensors") if p.name != RESEARCH_WEIGHTS)
    if len(candidates) != 1:
        raise SourceError(
            f"{path} says randomize_llm_weights, so it must hold the randomized model's state "
            f"dict as one extra .safetensors file; found {len(candidates)}."
        )
    state = read_safetensors(candidates[0])
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise SourceError(f"{candidates[0]} does not fit the model: {first_line(err)}") from None


def _check_cfg(cfg: dict[str, Any], path: Path) -> tuple[int, int]:
    """Refuse what jsae cannot run; return the cfg's ``k`` and layer."""
    if cfg.get("activation_fn_str", "topk") != "topk":
        raise UnsupportedError(
            f"{path} uses activation {cfg.get('activation_fn_str')!r}; jsae supports TopK "
            "pairs only."
        )
    if cfg.get("is_pair") is False:
        raise UnsupportedError(f"{path} holds a single SAE (is_pair is false), not a JSAE pair.")
    normalize = cfg.get("normalize_activations") or "none"
    if normalize != "none":
        raise UnsupportedError(
            f"{path} uses normalize_activations={normalize!r}; only 'none' is supported."
        )
    k = (cfg.get("activation_fn_kwargs") or {}).get("k")
    if not isinstance(k, int) or k <= 0:
        raise SourceError(f"{path / RESEARCH_CFG} needs activation_fn_kwargs.k (a positive int).")
    hook_name = cfg.get("hook_name")
    layer = cfg.get("hook_layer")
    if layer is None and isinstance(hook_name, str):
        match = re.match(r"blocks\.(\d+)\.", hook_name)
        layer = int(match.group(1)) if match else None
    if not isinstance(layer, int):
        raise SourceError(f"{path / RESEARCH_CFG} needs hook_layer (the block of the MLP).")
    if hook_name is not None and hook_name != hook_in_name(layer):
        raise InputError(
            f"{path} was trained on {hook_name!r}, but a JSAE pair for layer {layer} must read "
            f"{hook_in_name(layer)!r} (the MLP input)."
        )
    return k, layer


def _sae_weights(
    weights: dict[str, torch.Tensor], suffix: str, path: Path
) -> dict[str, torch.Tensor]:
    """One SAE's tensors by ``RESEARCH_KEYS`` name, from keys with ``suffix``."""
    tensors = {}
    for key in RESEARCH_KEYS:
        for candidate in (f"_{key}{suffix}", f"{key}{suffix}"):
            if candidate in weights:
                tensors[key] = weights[candidate]
                break
        else:
            raise SourceError(
                f"{path / RESEARCH_WEIGHTS} lacks the weight _{key}{suffix}; "
                "the file is incomplete or not a JSAE pair."
            )
    return tensors


def _topk_sae(
    tensors: dict[str, torch.Tensor],
    *,
    k: int,
    hook_name: str,
    apply_b_dec_to_input: bool,
    model_name: str | None,
    device: str,
    where: Path,
) -> TopKSAE:
    """A sae-lens TopK SAE with ``tensors`` as weights, after checking their shapes."""
    W_enc = tensors["W_enc"]
    if W_enc.ndim != 2:
        raise SourceError(f"{where}: W_enc must be 2-D [d_in, d_sae], got {tuple(W_enc.shape)}.")
    d_in, d_sae = W_enc.shape
    expected = {"b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise SourceError(
                f"{where}: {key} has shape {tuple(tensors[key].shape)}, expected {shape} "
                f"for d_in={d_in}, d_sae={d_sae}."
            )
    if k > d_sae:
        raise SourceError(f"{where}: k={k} is larger than d_sae={d_sae}.")
    cfg = TopKSAEConfig(
        d_in=d_in, d_sae=d_sae, k=k, apply_b_dec_to_input=apply_b_dec_to_input, device=device
    )
    cfg.metadata.hook_name = hook_name
    cfg.metadata.model_name = model_name
    sae = TopKSAE(cfg)
    sae.load_state_dict({key: t.float() for key, t in tensors.items()})
    return sae.to(device)
