"""The research code's pair folder: ``cfg.json`` + ``sae_weights.safetensors``.

The weights file holds both SAEs of the pair: ``_W_enc`` [d_in, d_sae], ``_b_enc`` [d_sae],
``_W_dec`` [d_sae, d_in], ``_b_dec`` [d_in] for the input SAE (reading the MLP input) and the
same keys with the suffix ``_out`` for the output SAE (reading the MLP output). Keys without
the leading underscore are accepted too; the research trainer's copy of the MLP
(``mlp.W_in`` ...) is ignored, as the research loader ignores it. Both SAEs are TopK with one
``k``.

The cfg is read as the research loader reads it (``SAEPair.load_from_pretrained`` at the
authors' last commit): the keys its training runner writes (``activation_fn``,
``use_jacobian_loss``) and the older names (``activation_fn_str``, ``is_pair``) alike, with
its defaults for missing keys (``apply_b_dec_to_input`` True). ``docs/research-format.md``
lists every key and what jsae does with it.

A cfg with ``randomize_llm_weights`` ships the randomized model's whole state dict beside the
pair as ``randomized_llm_weights.safetensors`` (a ``sparsity.safetensors`` may sit there
too): the research code builds the model with ``from_pretrained_no_processing`` and loads
that file into it strictly.
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

from jsae.errors import InputError, SourceError, UnsupportedError
from jsae.loading.files import load_state_exactly, read_json, read_safetensors, write_json
from jsae.pair import JSAEPair, hook_in_name, hook_out_name, is_randomized, pair_kind

RESEARCH_CFG = "cfg.json"
RESEARCH_WEIGHTS = "sae_weights.safetensors"
RANDOMIZED_WEIGHTS = "randomized_llm_weights.safetensors"
"""The randomized model's state dict, beside a pair trained with ``randomize_llm_weights``."""
RESEARCH_DEFAULTS = {"apply_b_dec_to_input": True, "activation_fn": "relu"}
"""What the research loader assumes for keys a cfg lacks (``handle_config_defaulting``)."""
RESEARCH_KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")
OUT_SUFFIX = "_out"
"""Suffix of the output SAE's weight keys; the input SAE's have none."""


def load_research_pair(
    path: Path, device: str = "cpu", kind: str | None = None
) -> tuple[JSAEPair, dict[str, Any]]:
    """Read the research code's pair folder; returns the pair and its cfg.

    Unknown cfg keys are ignored. The kind follows the cfg: ``"plain"`` when it records a
    zero ``jacobian_coefficient`` (the paper's "traditional SAEs", trained with λ = 0), else
    ``"jsae"``, with the randomized-LLM suffix when ``randomize_llm_weights`` is set. A
    ``kind`` given by a source folder must agree with the cfg on randomization.
    """
    cfg = read_json(path / RESEARCH_CFG)
    weights = read_safetensors(path / RESEARCH_WEIGHTS)
    k, layer = _check_cfg(cfg, path)
    _check_weights(weights, cfg, path)
    saes = []
    for suffix, hook in (("", hook_in_name(layer)), (OUT_SUFFIX, hook_out_name(layer))):
        saes.append(
            _topk_sae(
                _sae_weights(weights, suffix, path),
                k=k,
                hook_name=hook,
                apply_b_dec_to_input=bool(research_value(cfg, "apply_b_dec_to_input")),
                model_name=cfg.get("model_name"),
                device=device,
                where=path,
            )
        )
    randomized = bool(cfg.get("randomize_llm_weights", False))
    if kind is None:
        kind = pair_kind(plain=cfg.get("jacobian_coefficient", None) == 0, randomized=randomized)
    elif is_randomized(kind) != randomized:
        raise SourceError(
            f"{path} is listed as a {kind!r} pair, but its cfg says randomize_llm_weights="
            f"{str(randomized).lower()}: list it under "
            f"{pair_kind(plain=kind.startswith('plain'), randomized=randomized)!r}."
        )
    return JSAEPair(saes[0], saes[1], layer=layer, kind=kind), cfg


def research_value(cfg: dict[str, Any], key: str) -> Any:
    """A cfg value as the research loader sees it: the key, its older name, or the default."""
    for name in (key, *RENAMED.get(key, ())):
        if name in cfg:
            return cfg[name]
    return RESEARCH_DEFAULTS.get(key)


RENAMED = {"activation_fn": ("activation_fn_str",), "use_jacobian_loss": ("is_pair",)}
"""Keys the research loader reads under either name (its ``SAEPairConfig.from_dict``)."""


def save_research_pair(
    pair: JSAEPair,
    path: str | os.PathLike,
    model_name: str,
    extra_cfg: dict[str, Any] | None = None,
    randomized_model: HookedTransformer | None = None,
) -> Path:
    """Write ``pair`` in the research code's folder format (``randomized_model``: the
    randomized-LLM model a control pair reads, written beside it as the research code does)."""
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
        "randomize_llm_weights": randomized_model is not None,
        "dtype": "float32",
        "device": "cpu",
    }
    cfg.update(extra_cfg or {})
    save_file(weights, path / RESEARCH_WEIGHTS)
    if randomized_model is not None:
        state = {k: v.detach().contiguous().cpu() for k, v in randomized_model.state_dict().items()}
        save_file(state, path / RANDOMIZED_WEIGHTS)
    write_json(cfg, path / RESEARCH_CFG)
    return path


def load_randomized_weights(model: HookedTransformer, path: Path) -> None:
    """Load the randomized model's state dict shipped beside a research pair, strictly: every
    parameter of ``model`` must be in the file and nothing else (``model`` must be built the
    way the research code built it, with ``from_pretrained_no_processing``)."""
    weights = path / RANDOMIZED_WEIGHTS
    if not weights.is_file():
        raise SourceError(
            f"{path} says randomize_llm_weights, so it must hold the randomized model's state "
            f"dict as {RANDOMIZED_WEIGHTS}; it does not."
        )
    load_state_exactly(model, read_safetensors(weights), weights)


def _check_cfg(cfg: dict[str, Any], path: Path) -> tuple[int, int]:
    """Refuse what jsae cannot run; return the cfg's ``k`` and layer."""
    activation = research_value(cfg, "activation_fn")
    if activation != "topk":
        raise UnsupportedError(
            f"{path} uses activation {activation!r}; jsae supports TopK pairs only."
        )
    if research_value(cfg, "use_jacobian_loss") is False:
        raise UnsupportedError(
            f"{path} holds a single SAE (use_jacobian_loss / is_pair is false), not a JSAE pair."
        )
    architecture = cfg.get("architecture") or "standard"
    if architecture != "standard":
        raise UnsupportedError(
            f"{path} uses architecture {architecture!r}; jsae supports 'standard' TopK pairs."
        )
    if cfg.get("hook_head_index") is not None:
        raise UnsupportedError(f"{path} reads one attention head; a JSAE pair reads an MLP.")
    normalize = cfg.get("normalize_activations") or "none"
    if normalize != "none":
        raise UnsupportedError(
            f"{path} uses normalize_activations={normalize!r}; only 'none' is supported."
        )
    k = (cfg.get("activation_fn_kwargs") or {}).get("k")
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
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


def _check_weights(weights: dict[str, torch.Tensor], cfg: dict[str, Any], path: Path) -> None:
    """Refuse weights the research loader would scale or fail on: a fine-tuning scaling factor,
    or shapes that disagree with the cfg's ``d_in``/``d_sae``."""
    if any("scaling_factor" in key for key in weights):
        raise UnsupportedError(
            f"{path / RESEARCH_WEIGHTS} has a fine-tuning scaling factor; jsae does not apply one."
        )
    W_enc = weights.get("_W_enc", weights.get("W_enc"))
    expected = (cfg.get("d_in"), cfg.get("d_sae"))
    if W_enc is not None and W_enc.ndim == 2:
        for got, want, name in zip(W_enc.shape, expected, ("d_in", "d_sae"), strict=True):
            if want is not None and got != want:
                raise SourceError(
                    f"{path}: the weights have {name}={got}, but {RESEARCH_CFG} says {want}."
                )


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
