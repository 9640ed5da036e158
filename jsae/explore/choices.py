"""What the sidebar and the prompt panel offer: sources, example prompts, the ε slider's
stops, ablation modes and the pairs of a source."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

from jsae.ablation import AblationConfig
from jsae.errors import InputError
from jsae.example_texts import DEFAULT_PROMPTS
from jsae.loading import BUILTIN_SOURCES, DEMO_SOURCE, WANDB_ARTIFACT
from jsae.pair import DEFAULT_KIND
from jsae.table import DEFAULT_EPS

DEFAULT_SCALE = AblationConfig.scale
DEFAULT_SOURCE_ENV = "JSAE_DEFAULT_SOURCE"
EPS_MIN_EXP, EPS_MAX_EXP, EPS_STEPS_PER_DECADE = -6, 1, 4
EPS_GRID: tuple[float, ...] = tuple(
    float(f"{10 ** (k / EPS_STEPS_PER_DECADE):.3g}")
    for k in range(EPS_MIN_EXP * EPS_STEPS_PER_DECADE, EPS_MAX_EXP * EPS_STEPS_PER_DECADE + 1)
)
"""The log-scale ε slider's stops: four per decade from 1e-6 to 10."""

CUSTOM_PROMPT = "Custom text"

SOURCE_TYPE_LABELS = {
    **{name: builtin.label for name, builtin in BUILTIN_SOURCES.items()},
    "wandb": "W&B artifact",
    "folder": "Local folder",
    "model": "Model + pair folder",
}
"""The sidebar's source choices: each built-in source by its name, then the kinds of
source a user names (a W&B artifact, a folder, a model with a pair folder)."""
SOURCE_TYPES = tuple(SOURCE_TYPE_LABELS)
MODE_LABELS = {
    "unit": "unit (s = 1)",
    "zero": "zero (s = aᵢ)",
    "scale": "scale (s = chosen)",
}


def default_prompts() -> dict[str, str]:
    """The example prompts the app offers (``jsae.example_texts.DEFAULT_PROMPTS``), a copy."""
    return dict(DEFAULT_PROMPTS)


def default_source() -> str:
    """The source the app opens on: ``$JSAE_DEFAULT_SOURCE`` when set, else the bundled
    default."""
    return os.environ.get(DEFAULT_SOURCE_ENV, "").strip() or DEMO_SOURCE


def source_type(source: str, model: str | None = None) -> str:
    """Which of the sidebar's source choices a source string belongs to (a built-in source's
    own name for a built-in source)."""
    source = source.strip()
    if source in BUILTIN_SOURCES:
        return source
    if model:
        return "model"
    if WANDB_ARTIFACT.match(source) and not os.path.isdir(os.path.expanduser(source)):
        return "wandb"
    return "folder"


def nearest_eps_stop(eps: float) -> float:
    """The log-slider stop closest to ``eps`` (in log space)."""
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
        return DEFAULT_EPS
    return min(EPS_GRID, key=lambda stop: abs(math.log10(stop) - math.log10(eps)))


def resolve_pair(
    layers_by_kind: Mapping[str, Sequence[int]], layer: int | None, kind: str
) -> tuple[int, str, list[str]]:
    """Pick a layer that has a pair and a kind available there, warning on what was asked
    for but does not exist. ``layers_by_kind`` maps each kind to its layers, in the source's
    order of kinds (its first kind is the one shown when none is asked for). Asked for the
    default kind where it is missing, the layer's first kind is shown without a warning when
    the layer has a plain pair or the source has no pair of the default kind at all (the
    default was not a choice)."""
    warnings: list[str] = []
    all_layers = sorted({lay for layers in layers_by_kind.values() for lay in layers})
    if not all_layers:
        raise InputError("The source has no JSAE pairs at all; pick another source.")
    if layer is None or layer not in all_layers:
        if layer is not None:
            warnings.append(
                f"Layer {layer} has no pair in this source; showing layer {all_layers[0]} "
                f"(layers with a pair: {', '.join(map(str, all_layers))})."
            )
        first_layers = sorted(next(iter(layers_by_kind.values())))
        layer = first_layers[0] if first_layers and layer is None else all_layers[0]
    kinds = kinds_at(layers_by_kind, layer)
    if kind not in kinds:
        silent = kind == DEFAULT_KIND and ("plain" in kinds or not layers_by_kind.get(kind))
        if not silent:
            warnings.append(f"Layer {layer} has no {kind} pair; showing its {kinds[0]} pair.")
        kind = kinds[0]
    return layer, kind, warnings


def kinds_at(layers_by_kind: Mapping[str, Sequence[int]], layer: int) -> list[str]:
    """The pair kinds available at ``layer``, in ``layers_by_kind``'s order."""
    return [kind for kind, layers in layers_by_kind.items() if layer in layers]
