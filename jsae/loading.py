"""Loading models and JSAE pairs: one ``load_source`` for the CLI and the app.

A *source* is one of

* ``"demo"``: the bundled default in ``jsae/assets/demo`` (offline);
* a W&B artifact path ``entity/project/name:version``: downloaded with the wandb API into a
  local cache folder, then read as a folder;
* a local folder, which is either
  - a *source folder* with ``source.json`` naming a model and pair folders per kind and layer
    (the bundled default is one),
  - a *research pair folder* (``cfg.json`` + ``sae_weights.safetensors`` with ``_W_enc`` ...
    and ``_W_enc_out`` ... keys, the research code's format), or
  - a *sae-lens pair folder* (``pair.json`` + ``in/`` and ``out/`` sae-lens SAE folders).

Models load by TransformerLens name (``HookedTransformer.from_pretrained``, where the hub or
a local HF cache is reachable) or from a *model folder*: ``config.json`` (a
``HookedTransformerConfig``), ``model.safetensors`` (its state dict) and a tokenizer saved
with ``save_pretrained`` (``tokenizer.json`` + ``tokenizer_config.json``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from sae_lens import SAE, TopKSAE, TopKSAEConfig
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from jsae.errors import InputError, SourceError, UnsupportedError, first_line
from jsae.pair import PAIR_KINDS, JSAEPair, hook_in_name, hook_out_name

DEMO_DIR = Path(__file__).parent / "assets" / "demo"
SOURCE_MANIFEST = "source.json"
RESEARCH_CFG = "cfg.json"
RESEARCH_WEIGHTS = "sae_weights.safetensors"
SAE_LENS_PAIR_MANIFEST = "pair.json"
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"
WANDB_ARTIFACT = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+:[\w.-]+$")
RESEARCH_KEYS = ("W_enc", "b_enc", "W_dec", "b_dec")


# --------------------------------------------------------------------------------------
# Sources


@dataclass
class Source:
    """A model with its JSAE pairs, by kind and layer.

    Args:
        name: what the user typed to get it (``"demo"``, a path, an artifact path).
        model: the TransformerLens model; its ``tokenizer`` is the tokenizer.
        pairs: ``pairs[kind][layer]``, kind ``"jsae"`` or ``"plain"``.
        info: anything the source describes itself with (metrics, training settings).
    """

    name: str
    model: HookedTransformer
    pairs: dict[str, dict[int, JSAEPair]]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def kinds(self) -> list[str]:
        return [kind for kind in PAIR_KINDS if self.pairs.get(kind)]

    def layers(self, kind: str = "jsae") -> list[int]:
        return sorted(self.pairs.get(kind, {}))

    def pair(self, layer: int, kind: str = "jsae") -> JSAEPair:
        if kind not in self.pairs or not self.pairs[kind]:
            raise InputError(
                f"{self.name} has no {kind} pairs; it has: {', '.join(self.kinds) or 'none'}."
            )
        if layer not in self.pairs[kind]:
            have = ", ".join(map(str, self.layers(kind)))
            raise InputError(
                f"Layer {layer} has no {kind} pair in {self.name}; layers with one: {have}."
            )
        return self.pairs[kind][layer]


def load_source(
    source: str | os.PathLike,
    *,
    model: str | os.PathLike | HookedTransformer | None = None,
    device: str = "cpu",
    cache_dir: str | os.PathLike | None = None,
) -> Source:
    """Load ``source`` (``"demo"``, a W&B artifact path or a local folder).

    ``model`` overrides the model a pair folder names (a TransformerLens name, a model
    folder, or an already loaded model).
    """
    name = str(source).strip()
    if not name:
        raise InputError("No source given: use 'demo', a local folder or a W&B artifact path.")
    if name == "demo":
        if not (DEMO_DIR / SOURCE_MANIFEST).is_file():
            raise SourceError(
                f"The bundled default is missing from {DEMO_DIR}. Rebuild it with "
                "`jsae train-demo --output jsae/assets/demo`."
            )
        return load_folder(DEMO_DIR, model=model, device=device, name="demo")
    path = Path(name).expanduser()
    if path.is_dir():
        return load_folder(path, model=model, device=device, name=name)
    if WANDB_ARTIFACT.match(name):
        folder = download_wandb_artifact(name, cache_dir)
        return load_folder(folder, model=model, device=device, name=name)
    if path.exists():
        raise SourceError(f"{name} is a file; a source is a folder (or 'demo', or a W&B path).")
    raise SourceError(
        f"{name!r} is not a folder on this machine, nor a W&B artifact path "
        "(entity/project/name:version), nor 'demo'. Check the spelling."
    )


def save_source(
    path: str | os.PathLike,
    model: HookedTransformer,
    pairs: dict[str, dict[int, JSAEPair]],
    info: dict[str, Any] | None = None,
) -> Path:
    """Write a source folder: ``model/``, ``pairs/{kind}/layer_{L}/`` (research format) and
    ``source.json``. ``info`` (metrics, settings) is stored in the manifest too."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_model_folder(model, path / "model")
    listing: dict[str, dict[str, str]] = {}
    for kind, by_layer in pairs.items():
        for layer, pair in sorted(by_layer.items()):
            rel = f"pairs/{kind}/layer_{layer}"
            coefficient = {"jacobian_coefficient": 0.0} if kind == "plain" else {}
            save_research_pair(pair, path / rel, model_name="model", extra_cfg=coefficient)
            listing.setdefault(kind, {})[str(layer)] = rel
    manifest = {"model": "model", "pairs": listing, **(info or {})}
    (path / SOURCE_MANIFEST).write_text(json.dumps(manifest, indent=2))
    return path


def load_folder(
    path: Path,
    *,
    model: str | os.PathLike | HookedTransformer | None = None,
    device: str = "cpu",
    name: str | None = None,
) -> Source:
    """Read a source folder, a research pair folder or a sae-lens pair folder."""
    name = name or str(path)
    if (path / SOURCE_MANIFEST).is_file():
        manifest = _read_json(path / SOURCE_MANIFEST)
        try:
            model_ref = manifest["model"]
            pair_dirs = manifest["pairs"]
        except (KeyError, TypeError):
            raise SourceError(f"{path / SOURCE_MANIFEST} needs 'model' and 'pairs'.") from None
        if model is None:
            local = path / model_ref
            model = local if local.is_dir() else model_ref
        loaded = load_model(model, device=device)
        pairs: dict[str, dict[int, JSAEPair]] = {}
        for kind, by_layer in pair_dirs.items():
            for layer, rel in by_layer.items():
                pair, _ = load_pair_folder(path / rel, device=device, kind=kind)
                if pair.layer != int(layer):
                    raise SourceError(
                        f"{path / rel} holds a pair for layer {pair.layer}, but "
                        f"{SOURCE_MANIFEST} lists it under layer {layer}."
                    )
                pair.check_model(loaded)
                pairs.setdefault(kind, {})[pair.layer] = pair
        info = {k: v for k, v in manifest.items() if k not in ("model", "pairs")}
        return Source(name, loaded, pairs, info)

    pair, cfg = load_pair_folder(path, device=device)
    if model is None:
        model_name = cfg.get("model_name")
        if not model_name:
            raise SourceError(f"{path} does not name its model; pass one with --model.")
        no_processing = bool(cfg.get("randomize_llm_weights"))
        loaded = load_model(model_name, device=device, no_processing=no_processing)
    else:
        loaded = load_model(model, device=device)
    if cfg.get("randomize_llm_weights"):
        load_randomized_weights(loaded, path)
    pair.check_model(loaded)
    return Source(name, loaded, {pair.kind: {pair.layer: pair}}, {"cfg": cfg})


def load_pair_folder(
    path: Path, device: str = "cpu", kind: str | None = None
) -> tuple[JSAEPair, dict[str, Any]]:
    """A research pair folder or a sae-lens pair folder, whichever ``path`` is."""
    if not path.is_dir():
        raise SourceError(f"Pair folder {path} does not exist.")
    if (path / SAE_LENS_PAIR_MANIFEST).is_file():
        return load_sae_lens_pair(path, device=device, kind=kind)
    if (path / RESEARCH_CFG).is_file():
        return load_research_pair(path, device=device, kind=kind)
    raise SourceError(
        f"{path} is not a pair folder: expected {RESEARCH_CFG} + {RESEARCH_WEIGHTS} (research "
        f"format), {SAE_LENS_PAIR_MANIFEST} + in/ + out/ (sae-lens format), or "
        f"{SOURCE_MANIFEST} (a source folder)."
    )


# --------------------------------------------------------------------------------------
# The research code's pair folder


def load_research_pair(
    path: Path, device: str = "cpu", kind: str | None = None
) -> tuple[JSAEPair, dict[str, Any]]:
    """Read the research code's pair folder (``cfg.json`` + ``sae_weights.safetensors``).

    Weight keys ``_W_enc`` [d_in, d_sae], ``_b_enc``, ``_W_dec`` [d_sae, d_in], ``_b_dec`` for
    the input SAE, the same with suffix ``_out`` for the output SAE (keys without the leading
    underscore are accepted too). Unknown cfg keys are ignored. The kind is ``"plain"`` when
    the cfg records a zero ``jacobian_coefficient``, else ``"jsae"``.
    """
    cfg = _read_json(path / RESEARCH_CFG)
    weights = _read_safetensors(path / RESEARCH_WEIGHTS)
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
    saes = []
    for suffix, hook in (("", hook_in_name(layer)), ("_out", hook_out_name(layer))):
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
        saes.append(
            _topk_sae(
                tensors,
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
    for suffix, sae in (("", pair.sae_in), ("_out", pair.sae_out)):
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
    (path / RESEARCH_CFG).write_text(json.dumps(cfg, indent=2))
    return path


def load_randomized_weights(model: HookedTransformer, path: Path) -> None:
    """Load the randomized model's state dict shipped beside a research pair."""
    candidates = sorted(p for p in path.glob("*.safetensors") if p.name != RESEARCH_WEIGHTS)
    if len(candidates) != 1:
        raise SourceError(
            f"{path} says randomize_llm_weights, so it must hold the randomized model's state "
            f"dict as one extra .safetensors file; found {len(candidates)}."
        )
    state = _read_safetensors(candidates[0])
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise SourceError(f"{candidates[0]} does not fit the model: {first_line(err)}") from None


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


# --------------------------------------------------------------------------------------
# Pairs as two sae-lens folders


def save_sae_lens_pair(pair: JSAEPair, path: str | os.PathLike) -> Path:
    """Write ``pair`` as ``pair.json`` + ``in/`` and ``out/`` (sae-lens ``save_model``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    pair.sae_in.save_model(path / "in")
    pair.sae_out.save_model(path / "out")
    manifest = {"layer": pair.layer, "kind": pair.kind, "in": "in", "out": "out"}
    (path / SAE_LENS_PAIR_MANIFEST).write_text(json.dumps(manifest, indent=2))
    return path


def load_sae_lens_pair(
    path: Path, device: str = "cpu", kind: str | None = None
) -> tuple[JSAEPair, dict[str, Any]]:
    manifest = _read_json(path / SAE_LENS_PAIR_MANIFEST)
    saes = []
    for side in ("in", "out"):
        folder = path / manifest.get(side, side)
        try:
            sae = SAE.load_from_disk(folder, device=device)
        except FileNotFoundError:
            raise SourceError(
                f"{folder} is missing (a sae-lens pair needs in/ and out/)."
            ) from None
        except (SafetensorError, json.JSONDecodeError, KeyError, ValueError, OSError) as err:
            raise SourceError(f"{folder} could not be read as a sae-lens SAE: {err}") from None
        saes.append(sae)
    try:
        layer = int(manifest["layer"])
    except (KeyError, TypeError, ValueError):
        raise SourceError(f"{path / SAE_LENS_PAIR_MANIFEST} needs an integer 'layer'.") from None
    pair = JSAEPair(saes[0], saes[1], layer=layer, kind=kind or manifest.get("kind", "jsae"))
    return pair, manifest


# --------------------------------------------------------------------------------------
# Models


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
            "local HF cache), or a local model folder (config.json, model.safetensors, "
            "tokenizer.json)."
        ) from None


def save_model_folder(model: HookedTransformer, path: str | os.PathLike) -> Path:
    """Write ``model`` as a model folder: config, state dict and tokenizer."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = {}
    for key, value in model.cfg.to_dict().items():
        if key in ("device", "dtype", "n_params"):
            continue
        try:
            json.dumps(value)
        except TypeError:
            continue
        cfg[key] = value
    (path / MODEL_CONFIG).write_text(json.dumps(cfg, indent=2))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, path / MODEL_WEIGHTS)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(path)
    return path


def load_model_folder(path: Path, device: str = "cpu") -> HookedTransformer:
    cfg_dict = _read_json(path / MODEL_CONFIG)
    try:
        cfg = HookedTransformerConfig(**{**cfg_dict, "device": device})
    except (TypeError, ValueError, AssertionError) as err:
        raise SourceError(
            f"{path / MODEL_CONFIG} is not a HookedTransformerConfig: {err}"
        ) from None
    tokenizer = None
    if (path / "tokenizer.json").is_file():
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
        except Exception as err:  # tokenizers raises plain Exception subclasses
            raise SourceError(f"{path / 'tokenizer.json'} could not be read: {err}") from None
        tokenizer.add_bos_token = True
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    state = _read_safetensors(path / MODEL_WEIGHTS)
    missing, unexpected = model.load_state_dict(state, strict=False)
    real_missing = [k for k in missing if not k.endswith(("IGNORE", "mask"))]
    if real_missing or unexpected:
        raise SourceError(
            f"{path / MODEL_WEIGHTS} does not fit {path / MODEL_CONFIG}: missing "
            f"{real_missing[:3]}, unexpected {unexpected[:3]}."
        )
    if device != "cpu":
        model.to(device)
    model.eval()
    return model


# --------------------------------------------------------------------------------------
# W&B


def download_wandb_artifact(artifact_path: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download a W&B artifact into ``cache_dir`` once, and return the local folder."""
    cache = Path(cache_dir or os.environ.get("JSAE_CACHE", Path.home() / ".cache" / "jsae"))
    folder = cache / "artifacts" / artifact_path.replace("/", "__").replace(":", "__")
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    try:
        import wandb

        artifact = wandb.Api().artifact(artifact_path)
        artifact.download(root=str(folder))
    except Exception as err:  # wandb raises CommError, requests errors, ValueError, ...
        raise SourceError(
            f"Could not download the W&B artifact {artifact_path!r}: "
            f"{first_line(err)}. Check the path, "
            "your network and WANDB_API_KEY, or download it yourself and pass the folder."
        ) from None
    return folder


# --------------------------------------------------------------------------------------
# Files


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SourceError(f"{path} is missing.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{path} is corrupt (not valid JSON: {err}).") from None
    if not isinstance(data, dict):
        raise SourceError(f"{path} must hold a JSON object.")
    return data


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path)
    except FileNotFoundError:
        raise SourceError(f"{path} is missing.") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise SourceError(f"{path} is corrupt ({err}).") from None
