"""The view in the URL: a ``ViewState`` holds everything a link must carry to reproduce
what is on screen, and converts to and from URL query parameters.

Reading a URL never raises: a bad value gives a warning and the default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from jsae.ablation import MODES
from jsae.analysis.statistics import DEFAULT_TAU
from jsae.explore.choices import DEFAULT_SCALE, default_prompts, default_source
from jsae.explore.display import display_params, parse_display
from jsae.explore.order import DEFAULT_HEATMAP_ORDER, HEATMAP_ORDERS
from jsae.explore.prompt_store import HASH_PATTERN, MAX_PROMPT_CHARS, prompt_hash
from jsae.explore.runs import RunKey
from jsae.pair import KIND_NAME
from jsae.sampler import PAIR_SAMPLERS
from jsae.table import DEFAULT_EPS

MAX_URL_TEXT = 1500
"""Custom prompts longer than this (characters) go into the URL by their hash
(``prompt_hash``; the app keeps the text in a ``PromptStore``)."""


@dataclass(frozen=True)
class ViewState:
    """Everything a link must carry to reproduce a view.

    Args:
        source, model: what to load (``model`` only for a bare pair folder).
        layer, kind: the pair; ``None`` means the source's first.
        mode, scale: the perturbation.
        pairs, seed: which connections of each token are kept (``jsae.sampler``).
        eps: the |J| threshold.
        prompt: the name of a default prompt, or ``None`` for custom ``text``.
        text: the custom prompt text (when ``prompt`` is ``None``).
        text_hash: a link's ``prompt_hash`` of a long custom prompt, for the app to look up
            (``PromptStore.get``); None otherwise.
        run: whether results were on screen (a link then reruns them on open).
        position, in_feature, out_feature: the token explorer's selection.
        order: the order of the token explorer's heatmap (``HEATMAP_ORDERS``).
        tau: a connection moved when |diff| > τ (the statistics' threshold).
        cmp_a, cmp_b: the pair kinds JSAE vs plain sets side by side (None: the source's
            comparison for the run's kind).
        display: the display settings that differ from their defaults, as (name, URL text)
            pairs (``jsae.explore.display``).
    """

    source: str = "demo"
    model: str | None = None
    layer: int | None = None
    kind: str = "jsae"
    mode: str = "unit"
    scale: float = DEFAULT_SCALE
    pairs: str = "all"
    seed: int = 0
    eps: float = DEFAULT_EPS
    prompt: str | None = None
    text: str | None = None
    text_hash: str | None = None
    run: bool = False
    position: int | None = None
    in_feature: int | None = None
    out_feature: int | None = None
    order: str = DEFAULT_HEATMAP_ORDER
    tau: float = DEFAULT_TAU
    cmp_a: str | None = None
    cmp_b: str | None = None
    display: tuple[tuple[str, str], ...] = ()


def _single(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, list | tuple):
        value = value[-1] if value else ""
    return str(value)


def _parse_int(raw: str | None, name: str, warnings: list[str], minimum: int = 0) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        warnings.append(f"Ignored {name}={raw!r} from the URL: it must be a whole number.")
        return None
    if value < minimum:
        warnings.append(f"Ignored {name}={raw!r} from the URL: it must be ≥ {minimum}.")
        return None
    return value


def _parse_float(
    raw: str | None,
    name: str,
    default: float,
    warnings: list[str],
    positive: bool,
    non_negative: bool = False,
) -> float:
    """A finite number (greater than 0 when ``positive``, at least 0 when ``non_negative``),
    else ``default`` with a warning."""
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if non_negative and not (math.isfinite(value) and value >= 0):
        warnings.append(
            f"Ignored {name}={raw!r} from the URL: it must be a number of at least 0; "
            f"using {default:g}."
        )
        return default
    if positive and not (math.isfinite(value) and value > 0):
        warnings.append(
            f"Ignored {name}={raw!r} from the URL: it must be a number greater than 0; "
            f"using {default:g}."
        )
        return default
    if not math.isfinite(value):
        warnings.append(f"Ignored {name}={raw!r} from the URL: it must be a finite number.")
        return default
    return value


def _parse_choice(
    raw: str | None, name: str, choices: tuple[str, ...], warnings: list[str]
) -> str | None:
    """``raw`` when it is one of ``choices``; else None, with a warning when given."""
    if raw is None or raw in choices:
        return raw
    warnings.append(f"Ignored {name}={raw!r} from the URL: it must be one of {', '.join(choices)}.")
    return None


def parse_query_params(
    params: Mapping[str, Any],
    prompts: Mapping[str, str] | None = None,
    default: ViewState | None = None,
) -> tuple[ViewState, list[str]]:
    """Read a ``ViewState`` from URL query parameters, with a warning per bad value.

    Unknown or unusable values fall back to ``default`` (never raise). Whether a layer and
    kind exist is checked later, against the loaded source (``resolve_pair``).
    """
    prompts = default_prompts() if prompts is None else prompts
    default = default or ViewState(source=default_source())
    warnings: list[str] = []
    state: dict[str, Any] = {}

    source = _single(params, "source")
    if source is not None and source.strip():
        state["source"] = source.strip()
    model = _single(params, "model")
    if model is not None and model.strip():
        state["model"] = model.strip()
    layer = _parse_int(_single(params, "layer"), "layer", warnings)
    if layer is not None:
        state["layer"] = layer

    for name in ("kind", "cmp_a", "cmp_b"):
        kind = _single(params, name)
        if kind is not None and KIND_NAME.fullmatch(kind):
            state[name] = kind  # whether the source has such pairs is checked once it loads
        elif kind is not None:
            warnings.append(f"Ignored {name}={kind!r} from the URL: it is not a pair kind's name.")
    seed = _parse_int(_single(params, "seed"), "seed", warnings)
    if seed is not None:
        state["seed"] = seed
    for key, choices in (("mode", MODES), ("order", HEATMAP_ORDERS), ("pairs", PAIR_SAMPLERS)):
        choice = _parse_choice(_single(params, key), key, tuple(choices), warnings)
        if choice is not None:
            state[key] = choice
    scale, eps = _single(params, "scale"), _single(params, "eps")
    state["scale"] = _parse_float(scale, "scale", default.scale, warnings, positive=False)
    state["eps"] = _parse_float(eps, "eps", default.eps, warnings, positive=True)
    tau = _single(params, "tau")
    state["tau"] = _parse_float(
        tau, "tau", default.tau, warnings, positive=False, non_negative=True
    )

    name = _single(params, "prompt")
    text = _single(params, "text")
    hashed = _single(params, "prompt_hash")
    if hashed is not None and not HASH_PATTERN.fullmatch(hashed):
        warnings.append(f"Ignored prompt_hash={hashed!r} from the URL: it is not a prompt's hash.")
        hashed = None
    if text is not None and text.strip():
        state["text"] = text
        state["prompt"] = None
    elif hashed is not None:
        state["text_hash"] = hashed
        state["prompt"] = None
    elif name is not None:
        if name in prompts:
            state["prompt"] = name
            state["text"] = None
        else:
            known = ", ".join(prompts) or "none"
            warnings.append(
                f"Ignored prompt={name!r} from the URL: no such example prompt (known: {known})."
            )
    state["run"] = _single(params, "run") in ("1", "true", "yes")
    for key in ("position", "in_feature", "out_feature"):
        value = _parse_int(_single(params, key), key, warnings)
        if value is not None:
            state[key] = value
    shown = display_params(parse_display(params, warnings))
    if shown:
        state["display"] = tuple(shown.items())
    return replace(default, **state), warnings


def to_query_params(state: ViewState) -> dict[str, str]:
    """The URL query parameters of a view. The source is always named (a server's default
    source can differ); other defaults are left out to keep links short."""
    params: dict[str, str] = {"source": state.source}
    if state.model:
        params["model"] = state.model
    if state.layer is not None:
        params["layer"] = str(state.layer)
    params["kind"] = state.kind
    params["mode"] = state.mode
    if state.mode == "scale":
        params["scale"] = repr(float(state.scale))
    if state.pairs != "all":
        params["pairs"] = state.pairs
        if state.pairs == "random":
            params["seed"] = str(state.seed)
    params["eps"] = repr(float(state.eps))
    prompt_in_url = True
    if state.prompt is not None:
        params["prompt"] = state.prompt
    elif state.text is not None:
        prompt_in_url = len(state.text) <= MAX_PROMPT_CHARS
        if len(state.text) <= MAX_URL_TEXT:
            params["text"] = state.text
        elif prompt_in_url:
            params["prompt_hash"] = prompt_hash(state.text)
    if state.run and prompt_in_url:  # a link without its prompt cannot claim the results
        params["run"] = "1"
    for key in ("position", "in_feature", "out_feature"):
        value = getattr(state, key)
        if value is not None:
            params[key] = str(value)
    if state.order != DEFAULT_HEATMAP_ORDER:
        params["order"] = state.order
    if state.tau != DEFAULT_TAU:
        params["tau"] = repr(float(state.tau))
    for name in ("cmp_a", "cmp_b"):
        if getattr(state, name) is not None:
            params[name] = getattr(state, name)
    params.update(state.display)
    return params


def view_link(page: str, params: Mapping[str, str], **extra: int | str | None) -> str:
    """A relative link to ``page`` (a url path) with the view's query parameters."""
    merged = dict(params) | {k: str(v) for k, v in extra.items() if v is not None}
    return f"{page}?{urlencode(merged)}" if merged else page


def view_of(
    key: RunKey,
    *,
    eps: float,
    prompt: str | None,
    prompts: Mapping[str, str],
    run: bool,
    position: int | None = None,
    in_feature: int | None = None,
    out_feature: int | None = None,
    order: str = DEFAULT_HEATMAP_ORDER,
    tau: float = DEFAULT_TAU,
    display: Mapping[str, Any] | None = None,
    compare: tuple[str | None, str | None] = (None, None),
) -> ViewState:
    """The view of settings ``key`` at ε. The prompt goes by its example name when ``prompt``
    names an example whose text is the key's, else as its text; ``run`` says the results
    of ``key`` are on screen; position, features and order are the token explorer's, τ the
    statistics', ``display`` the display settings' values by name."""
    named = prompt if prompt is not None and prompts.get(prompt) == key.text else None
    return ViewState(
        source=key.source,
        model=key.model,
        layer=key.layer,
        kind=key.kind,
        mode=key.mode,
        scale=key.scale,
        pairs=key.pairs,
        seed=key.seed,
        eps=eps,
        prompt=named,
        text=None if named else key.text,
        run=run,
        position=position,
        in_feature=in_feature,
        out_feature=out_feature,
        order=order,
        tau=float(tau),
        display=tuple(display_params(display or {}).items()),
        cmp_a=compare[0],
        cmp_b=compare[1],
    )
