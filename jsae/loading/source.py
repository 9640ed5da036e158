"""Sources: a model with its JSAE pairs, and ``load_source``, which reads every kind of source.

``load_source`` takes a built-in source's name (``BUILTIN_SOURCES``: ``"demo"``, the bundled
default, and ``"planted"``, the planted ground truth, built from its seed), a local folder, or
a W&B artifact path (downloaded into the cache, then read as a folder). A folder is a *source folder* or a
single pair folder (``load_pair_folder``: the research format or a sae-lens pair).

A source folder has ``source.json``: ``{"model": "model", "pairs": {kind: {layer: folder}}}``
plus anything the source describes itself with (metrics, training settings). ``model`` is a
model folder inside it or a TransformerLens name; each pair folder is in the research format
(``save_source`` writes ``pairs/{kind}/layer_{L}/``). Its kinds are the paper's
(``PAIR_KINDS``) unless it declares its own under ``"pair_kinds"``: ``{"labels": {kind:
label}, "compared": [[kind, kind], ...], "help": "..."}`` (``jsae.pair.PairKinds``).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from transformer_lens import HookedTransformer

from jsae.errors import InputError, SourceError
from jsae.loading.files import read_json, write_json
from jsae.loading.model import load_model, save_model_folder
from jsae.loading.research import (
    RESEARCH_CFG,
    RESEARCH_WEIGHTS,
    load_randomized_weights,
    load_research_pair,
    save_research_pair,
)
from jsae.loading.sae_lens_pair import SAE_LENS_PAIR_MANIFEST, is_sae_lens_pair, load_sae_lens_pair
from jsae.loading.wandb_artifact import WANDB_ARTIFACT, download_wandb_artifact
from jsae.pair import DEFAULT_KIND, PAIR_KINDS, PAPER_KINDS, JSAEPair, PairKinds, is_randomized
from jsae.planted import PLANTED_KINDS, GroundTruth, planted_parts

DEMO_SOURCE = "demo"
"""The name of the bundled default, wherever a source is asked for."""
PLANTED_SOURCE = "planted"
"""The name of the planted ground truth (``jsae.planted``), wherever a source is asked for."""


@dataclass(frozen=True)
class BuiltinSource:
    """A source named by a word rather than a path: how pickers label and describe it."""

    label: str
    description: str


BUILTIN_SOURCES = {
    DEMO_SOURCE: BuiltinSource(
        "Bundled default",
        "A 4-layer language model trained for this app, with a plain pair and two kinds of "
        "JSAE pair per layer (jsae/assets/demo).",
    ),
    PLANTED_SOURCE: BuiltinSource(
        "Planted ground truth",
        "A one-layer model whose MLP computes a known sparse graph, built from a seed, with "
        "pairs right (true features) and wrong in known ways (rotated, noisy, too small k).",
    ),
}
"""The built-in sources, in the order pickers offer them: the one place they are named."""
DEMO_DIR = Path(__file__).parent.parent / "assets" / "demo"
SOURCE_MANIFEST = "source.json"
PAIR_KINDS_KEY = "pair_kinds"
"""The manifest's key for the kinds a source declares (see the module docstring)."""
SOURCE_KEYS = ("model", "pairs", PAIR_KINDS_KEY)
"""The manifest's own keys; every other key is the source's ``info``."""


@dataclass
class Source:
    """A model with its JSAE pairs, by kind and layer.

    Args:
        name: what the user typed to get it (``"demo"``, a path, an artifact path).
        model: the TransformerLens model; its ``tokenizer`` is the tokenizer.
        pairs: ``pairs[kind][layer]``.
        info: anything the source describes itself with (metrics, training settings).
        pair_models: the model a pair reads when it is not ``model``, by (kind, layer): a
            randomized-LLM control's own randomized copy of the model.
        pair_kinds: the kinds it offers, their order and labels (the paper's unless the
            source declares its own).
        ground_truth: the true computation of an MLP, when the source knows it (the planted
            source does).
        model_ref: what ``model`` was loaded from, a TransformerLens name or a model folder's
            absolute path (None when it was passed in loaded): what an export records.
    """

    name: str
    model: HookedTransformer
    pairs: dict[str, dict[int, JSAEPair]]
    info: dict[str, Any] = field(default_factory=dict)
    pair_models: dict[tuple[str, int], HookedTransformer] = field(default_factory=dict)
    pair_kinds: PairKinds = PAPER_KINDS
    ground_truth: GroundTruth | None = None
    model_ref: str | None = None

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def kinds(self) -> list[str]:
        """The kinds it has pairs of: ``pair_kinds``' order, then any others by name."""
        declared = [kind for kind in self.pair_kinds.order if self.pairs.get(kind)]
        return declared + sorted(k for k in self.pairs if self.pairs[k] and k not in declared)

    @property
    def default_kind(self) -> str:
        """The kind shown when none is asked for: the first it has."""
        kinds = self.kinds
        return kinds[0] if kinds else DEFAULT_KIND

    def true_edges(self, layer: int, kind: str) -> pd.DataFrame | None:
        """The true edges of the ``kind`` pair of ``layer`` in its own feature ids
        (``jsae.planted.GroundTruth.edges_for``), or None when the source knows none there."""
        pair = self.pair(layer, kind)
        if self.ground_truth is None or self.ground_truth.layer != layer:
            return None
        return self.ground_truth.edges_for(pair)

    def layers(self, kind: str = DEFAULT_KIND) -> list[int]:
        return sorted(self.pairs.get(kind, {}))

    def model_for(self, layer: int, kind: str = DEFAULT_KIND) -> HookedTransformer:
        """The model the ``kind`` pair of ``layer`` reads: its own randomized model for a
        randomized-LLM control, else the source's model."""
        self.pair(layer, kind)  # the same error as pair() for a missing pair
        return self.pair_models.get((kind, layer), self.model)

    def pair(self, layer: int, kind: str = DEFAULT_KIND) -> JSAEPair:
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
    refresh: bool = False,
) -> Source:
    """Load ``source`` (``"demo"``, a W&B artifact path or a local folder).

    ``model`` overrides the model a pair folder names (a TransformerLens name, a model
    folder, or an already loaded model). A W&B artifact is downloaded into ``cache_dir``
    (``jsae.loading.wandb_artifact.cache_root``) once, or again when ``refresh``.
    """
    name = str(source).strip()
    if not name:
        raise InputError("No source given: use 'demo', a local folder or a W&B artifact path.")
    if name == PLANTED_SOURCE:
        return load_planted(model=model, device=device)
    if name == DEMO_SOURCE:
        if not (DEMO_DIR / SOURCE_MANIFEST).is_file():
            raise SourceError(
                f"The bundled default is missing from {DEMO_DIR}. Rebuild it with "
                "`jsae train-demo --output jsae/assets/demo`."
            )
        return load_folder(DEMO_DIR, model=model, device=device, name=DEMO_SOURCE)
    path = Path(name).expanduser()
    if path.is_dir():
        return load_folder(path, model=model, device=device, name=name)
    if WANDB_ARTIFACT.match(name):
        folder = download_wandb_artifact(name, cache_dir, refresh=refresh)
        return load_folder(folder, model=model, device=device, name=name)
    if path.exists():
        raise SourceError(f"{name} is a file; a source is a folder (or 'demo', or a W&B path).")
    raise SourceError(
        f"{name!r} is not a folder on this machine, nor a W&B artifact path "
        f"(entity/project/name:version), nor one of {', '.join(map(repr, BUILTIN_SOURCES))}. "
        "Check the spelling."
    )


def load_planted(
    *, model: str | os.PathLike | HookedTransformer | None = None, device: str = "cpu"
) -> Source:
    """The planted ground truth, built from its seed (``jsae.planted``)."""
    if model is not None:
        raise InputError(
            f"The {PLANTED_SOURCE!r} source builds its own model; drop the model override."
        )
    parts = planted_parts()
    if device != "cpu":
        parts.model.to(device)
        for by_layer in parts.pairs.values():
            for pair in by_layer.values():
                pair.sae_in.to(device)
                pair.sae_out.to(device)
    return Source(
        PLANTED_SOURCE,
        parts.model,
        parts.pairs,
        dict(parts.info),
        pair_kinds=PLANTED_KINDS,
        ground_truth=parts.truth,
    )


def save_source(
    path: str | os.PathLike,
    model: HookedTransformer,
    pairs: dict[str, dict[int, JSAEPair]],
    info: dict[str, Any] | None = None,
    pair_models: dict[tuple[str, int], HookedTransformer] | None = None,
    pair_kinds: PairKinds | None = None,
) -> Path:
    """Write a source folder: ``model/``, ``pairs/{kind}/layer_{L}/`` (research format) and
    ``source.json``. ``info`` (metrics, settings) is stored in the manifest too;
    ``pair_models`` gives each randomized-LLM control pair its randomized model (required for
    those kinds: it is written beside the pair, as the research code writes it);
    ``pair_kinds`` declares kinds other than the paper's (their labels and comparisons)."""
    path = Path(path)
    listing = {
        kind: {str(layer): f"pairs/{kind}/layer_{layer}" for layer in sorted(by_layer)}
        for kind, by_layer in pairs.items()
    }
    manifest: dict[str, Any] = {"model": "model", "pairs": listing}
    if pair_kinds is not None:
        manifest[PAIR_KINDS_KEY] = {
            "labels": dict(pair_kinds.labels),
            "compared": [list(pair) for pair in pair_kinds.compared],
            "help": pair_kinds.help,
        }
    manifest.update(info or {})
    # every refusal before anything is written, so a bad call leaves no half-written folder
    _check_manifest(manifest, path / SOURCE_MANIFEST)
    randomized = {
        (kind, layer): (pair_models or {}).get((kind, layer))
        for kind, by_layer in pairs.items()
        for layer in by_layer
        if is_randomized(kind)
    }
    for (kind, layer), reads in randomized.items():
        if reads is None:
            raise InputError(f"The {kind} pair of layer {layer} needs its randomized model.")
    path.mkdir(parents=True, exist_ok=True)
    save_model_folder(model, path / "model")
    for kind, by_layer in pairs.items():
        for layer, pair in by_layer.items():
            save_research_pair(
                pair,
                path / listing[kind][str(layer)],
                model_name="model",
                extra_cfg={"jacobian_coefficient": 0.0} if kind.startswith("plain") else {},
                randomized_model=randomized.get((kind, layer)),
            )
    write_json(manifest, path / SOURCE_MANIFEST)
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
        return _load_source_folder(path, model, device, name)
    return _load_pair_source(path, model, device, name)


def _load_source_folder(
    path: Path, model: str | os.PathLike | HookedTransformer | None, device: str, name: str
) -> Source:
    """A source folder: its model (unless ``model`` overrides it) and every listed pair."""
    manifest = read_json(path / SOURCE_MANIFEST)
    model_ref, pair_dirs, pair_kinds = _check_manifest(manifest, path / SOURCE_MANIFEST)
    if model is None:
        local = path / model_ref
        model = local if local.is_dir() else model_ref
    loaded = load_model(model, device=device)
    pairs: dict[str, dict[int, JSAEPair]] = {}
    pair_models: dict[tuple[str, int], HookedTransformer] = {}
    for kind, by_layer in pair_dirs.items():
        for layer, rel in by_layer.items():
            pair, cfg = load_pair_folder(path / rel, device=device, kind=kind)
            if pair.layer != layer:
                raise SourceError(
                    f"{path / rel} holds a pair for layer {pair.layer}, but "
                    f"{SOURCE_MANIFEST} lists it under layer {layer}."
                )
            if cfg.get("randomize_llm_weights"):
                reads = pair_models[kind, pair.layer] = randomized_model(model, path / rel, device)
            else:
                reads = loaded
            pair.check_model(reads)
            pairs.setdefault(kind, {})[pair.layer] = pair
    info = {k: v for k, v in manifest.items() if k not in SOURCE_KEYS}
    return Source(
        name,
        loaded,
        pairs,
        info,
        pair_models,
        pair_kinds=pair_kinds,
        model_ref=reference_of(model),
    )


def _check_manifest(
    manifest: dict[str, Any], where: Path
) -> tuple[str, dict[str, dict[int, str]], PairKinds]:
    """``source.json``'s model, pair folders (by kind, then layer) and kinds, or one
    ``SourceError`` saying what is malformed."""
    model_ref, pair_dirs = manifest.get("model"), manifest.get("pairs")
    if not isinstance(model_ref, str) or not model_ref.strip():
        raise SourceError(f"{where} needs 'model': a model folder inside it, or a model name.")
    shape = '{"jsae": {"0": "pairs/jsae/layer_0"}}'
    if not isinstance(pair_dirs, dict):
        raise SourceError(f"{where} needs 'pairs': pair folders by kind and layer, like {shape}.")
    pair_kinds = _declared_kinds(manifest.get(PAIR_KINDS_KEY), where)
    allowed = (*PAIR_KINDS, *(k for k in pair_kinds.order if k not in PAIR_KINDS))
    pairs: dict[str, dict[int, str]] = {}
    for kind, by_layer in pair_dirs.items():
        if kind not in allowed:
            raise SourceError(
                f"{where} lists pairs of kind {kind!r}; the kinds are {', '.join(allowed)} "
                f"(declare others under {PAIR_KINDS_KEY!r})."
            )
        if not isinstance(by_layer, dict):
            raise SourceError(f"{where}: pairs.{kind} must map layers to folders, like {shape}.")
        for layer, rel in by_layer.items():
            if not str(layer).isdigit():
                raise SourceError(f"{where}: pairs.{kind} has the layer {layer!r}; use a number.")
            if not isinstance(rel, str) or not rel.strip():
                raise SourceError(f"{where}: pairs.{kind}.{layer} must name a folder, got {rel!r}.")
            pairs.setdefault(kind, {})[int(layer)] = rel
    return model_ref, pairs, pair_kinds


def _declared_kinds(declared: Any, where: Path) -> PairKinds:
    """The kinds a manifest declares under ``PAIR_KINDS_KEY`` (the paper's when absent)."""
    if declared is None:
        return PAPER_KINDS
    shape = '{"labels": {"jsae": "JSAEs"}, "compared": [["jsae", "plain"]], "help": "..."}'
    if not isinstance(declared, dict) or not isinstance(declared.get("labels"), dict):
        raise SourceError(f"{where}: {PAIR_KINDS_KEY!r} must look like {shape}.")
    compared = declared.get("compared", [])
    if not isinstance(compared, list) or not all(isinstance(p, list) for p in compared):
        raise SourceError(f"{where}: {PAIR_KINDS_KEY}.compared must be a list of kind pairs.")
    try:
        return PairKinds(
            dict(declared["labels"]),
            tuple(tuple(pair) for pair in compared),
            str(declared.get("help", "")),
        )
    except InputError as error:
        raise SourceError(f"{where}: {PAIR_KINDS_KEY}: {error}") from None


def _load_pair_source(
    path: Path, model: str | os.PathLike | HookedTransformer | None, device: str, name: str
) -> Source:
    """A single pair folder, with the model its cfg names (unless ``model`` overrides it)."""
    pair, cfg = load_pair_folder(path, device=device)
    if model is None:
        model = cfg.get("model_name")
        if not model:
            raise SourceError(f"{path} does not name its model; pass one with --model.")
    if cfg.get("randomize_llm_weights"):
        loaded = randomized_model(model, path, device)
    else:
        loaded = load_model(model, device=device)
    pair.check_model(loaded)
    pairs = {pair.kind: {pair.layer: pair}}
    return Source(name, loaded, pairs, {"cfg": cfg}, model_ref=reference_of(model))


def reference_of(model: str | os.PathLike | HookedTransformer) -> str | None:
    """A model as a reference another process can load: a model folder's absolute path, a
    TransformerLens name, or None for a model object."""
    if isinstance(model, HookedTransformer):
        return None
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else str(model)


def randomized_model(
    model: str | os.PathLike | HookedTransformer, path: Path, device: str
) -> HookedTransformer:
    """The randomized LLM a control pair in ``path`` reads, built as the research code builds
    it: the model without weight processing (``from_pretrained_no_processing`` for a name; a
    model folder as saved; a copy of a loaded model, which stays untouched), then the pair's
    ``randomized_llm_weights.safetensors`` loaded into it strictly."""
    if isinstance(model, HookedTransformer):
        model = copy.deepcopy(model)
    loaded = load_model(model, device=device, no_processing=True)
    load_randomized_weights(loaded, path)
    return loaded


def load_pair_folder(
    path: Path, device: str = "cpu", kind: str | None = None
) -> tuple[JSAEPair, dict[str, Any]]:
    """A research pair folder or a sae-lens pair folder, whichever ``path`` is."""
    if not path.is_dir():
        raise SourceError(f"Pair folder {path} does not exist.")
    if is_sae_lens_pair(path):
        return load_sae_lens_pair(path, device=device, kind=kind)
    if (path / RESEARCH_CFG).is_file():
        return load_research_pair(path, device=device, kind=kind)
    raise SourceError(
        f"{path} is not a pair folder: expected {RESEARCH_CFG} + {RESEARCH_WEIGHTS} (research "
        f"format), in/ + out/ sae-lens folders (with or without {SAE_LENS_PAIR_MANIFEST}), or "
        f"{SOURCE_MANIFEST} (a source folder)."
    )
