"""The explorer's logic, free of Streamlit: view state in the URL, runs, binning, verdicts,
largest misses, the dose-response sweep and its classifier.

The app's pages read widgets, call these functions and draw what they return (the charts
come from ``jsae.charts``). Everything here is plain numpy / pandas / torch and is tested
without a browser.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from jsae import ablation as _ablation
from jsae import table as _table
from jsae.errors import InputError
from jsae.loading import WANDB_ARTIFACT
from jsae.pair import PAIR_KINDS
from jsae.prompt import mlp_inputs, tokenize
from jsae.sandwich import Sandwich
from jsae.stats import importance_ratio

DEFAULT_EPS = 0.01
DEFAULT_SCALE = 1.0
DEFAULT_SOURCE_ENV = "JSAE_DEFAULT_SOURCE"
EPS_MIN_EXP, EPS_MAX_EXP, EPS_STEPS_PER_DECADE = -6, 1, 4
EPS_GRID: tuple[float, ...] = tuple(
    float(f"{10 ** (k / EPS_STEPS_PER_DECADE):.3g}")
    for k in range(EPS_MIN_EXP * EPS_STEPS_PER_DECADE, EPS_MAX_EXP * EPS_STEPS_PER_DECADE + 1)
)
"""The log-scale ε slider's stops: four per decade from 1e-6 to 10."""

CUSTOM_PROMPT = "Custom text"
MAX_URL_TEXT = 1500
"""Custom prompts longer than this (characters) are not written into the URL."""

FALLBACK_PROMPTS = {
    "Fox": "The quick brown fox jumps over the lazy dog.",
    "Story": (
        "Once upon a time, there was a little girl named Lily. She loved to play outside "
        "in the park with her dog, and every day they ran to the big tree by the pond."
    ),
}

SOURCE_TYPES = ("demo", "wandb", "folder", "model")
SOURCE_TYPE_LABELS = {
    "demo": "Bundled default",
    "wandb": "W&B artifact",
    "folder": "Local folder",
    "model": "Model + pair folder",
}
MODE_LABELS = {
    "unit": "unit (s = 1)",
    "zero": "zero (s = aᵢ)",
    "scale": "scale (s = chosen)",
}
EXPERIMENTS = ("important", "unimportant")
MODES = _ablation.MODES
check_eps = _table.check_eps


# --------------------------------------------------------------------------------------
# Defaults


def default_prompts() -> dict[str, str]:
    """The bundled example prompts (``jsae.prompts.DEFAULT_PROMPTS``), or a small fallback
    while that module is missing or broken."""
    try:
        from jsae.prompts import DEFAULT_PROMPTS
    except Exception:  # missing module, or one that fails to import: fall back
        return dict(FALLBACK_PROMPTS)
    prompts = {
        str(name): text
        for name, text in dict(DEFAULT_PROMPTS).items()
        if isinstance(text, str) and text.strip()
    }
    return prompts or dict(FALLBACK_PROMPTS)


def default_source() -> str:
    """The source the app opens on: ``$JSAE_DEFAULT_SOURCE`` when set, else ``"demo"``."""
    return os.environ.get(DEFAULT_SOURCE_ENV, "").strip() or "demo"


def source_type(source: str, model: str | None = None) -> str:
    """Which of the sidebar's source choices a source string belongs to."""
    source = source.strip()
    if source == "demo":
        return "demo"
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


# --------------------------------------------------------------------------------------
# View state <-> URL query parameters


@dataclass(frozen=True)
class ViewState:
    """Everything a link must carry to reproduce a view.

    Args:
        source, model: what to load (``model`` only for a bare pair folder).
        layer, kind: the pair; ``None`` means the source's first.
        mode, scale: the perturbation.
        eps: the |J| threshold.
        prompt: the name of a default prompt, or ``None`` for custom ``text``.
        text: the custom prompt text (when ``prompt`` is ``None``).
        run: whether results were on screen (a link then reruns them on open).
        position, in_feature, out_feature: the token explorer's selection.
    """

    source: str = "demo"
    model: str | None = None
    layer: int | None = None
    kind: str = "jsae"
    mode: str = "unit"
    scale: float = DEFAULT_SCALE
    eps: float = DEFAULT_EPS
    prompt: str | None = None
    text: str | None = None
    run: bool = False
    position: int | None = None
    in_feature: int | None = None
    out_feature: int | None = None


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


def _parse_positive(raw: str | None, name: str, default: float, warnings: list[str]) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        warnings.append(
            f"Ignored {name}={raw!r} from the URL: it must be a number greater than 0; "
            f"using {default:g}."
        )
        return default
    return value


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

    kind = _single(params, "kind")
    if kind is not None:
        if kind in PAIR_KINDS:
            state["kind"] = kind
        else:
            warnings.append(
                f"Ignored kind={kind!r} from the URL: it must be one of {', '.join(PAIR_KINDS)}."
            )
    mode = _single(params, "mode")
    if mode is not None:
        if mode in _ablation.MODES:
            state["mode"] = mode
        else:
            warnings.append(
                f"Ignored mode={mode!r} from the URL: it must be one of "
                f"{', '.join(_ablation.MODES)}."
            )
    state["scale"] = _parse_scale(_single(params, "scale"), default.scale, warnings)
    state["eps"] = _parse_positive(_single(params, "eps"), "eps", default.eps, warnings)

    name = _single(params, "prompt")
    text = _single(params, "text")
    if text is not None and text.strip():
        state["text"] = text
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
    return replace(default, **state), warnings


def _parse_scale(raw: str | None, default: float, warnings: list[str]) -> float:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        warnings.append(f"Ignored scale={raw!r} from the URL: it must be a finite number.")
        return default
    return value


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
    params["eps"] = repr(float(state.eps))
    prompt_in_url = True
    if state.prompt is not None:
        params["prompt"] = state.prompt
    elif state.text is not None:
        prompt_in_url = len(state.text) <= MAX_URL_TEXT
        if prompt_in_url:
            params["text"] = state.text
    if state.run and prompt_in_url:  # a link without its prompt cannot claim the results
        params["run"] = "1"
    for key in ("position", "in_feature", "out_feature"):
        value = getattr(state, key)
        if value is not None:
            params[key] = str(value)
    return params


def view_link(page: str, params: Mapping[str, str], **extra: int | str | None) -> str:
    """A relative link to ``page`` (a url path) with the view's query parameters."""
    merged = dict(params) | {k: str(v) for k, v in extra.items() if v is not None}
    return f"{page}?{urlencode(merged)}" if merged else page


def resolve_pair(
    layers_by_kind: Mapping[str, Sequence[int]], layer: int | None, kind: str
) -> tuple[int, str, list[str]]:
    """Pick a layer that has a pair and a kind available there, warning on what was asked
    for but does not exist. ``layers_by_kind`` maps each kind to its layers."""
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
        jsae_layers = sorted(layers_by_kind.get("jsae", ()))
        layer = jsae_layers[0] if jsae_layers and layer is None else all_layers[0]
    kinds = kinds_at(layers_by_kind, layer)
    if kind not in kinds:
        if kind != "jsae" or "plain" not in kinds:
            warnings.append(f"Layer {layer} has no {kind} pair; showing its {kinds[0]} pair.")
        kind = kinds[0]
    return layer, kind, warnings


def kinds_at(layers_by_kind: Mapping[str, Sequence[int]], layer: int) -> list[str]:
    """The pair kinds available at ``layer``, in ``PAIR_KINDS`` order."""
    return [kind for kind in PAIR_KINDS if layer in layers_by_kind.get(kind, ())]


# --------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class RunKey:
    """What a computed table depends on (ε is not part of it: it only re-splits)."""

    source: str
    model: str | None
    layer: int
    kind: str
    mode: str
    scale: float
    text: str


@dataclass
class RunData:
    """One prompt's ablation, read ε-free: ε only re-splits it.

    Args:
        ablation: what ``jsae.ablation.ablate`` returned (split at ``DEFAULT_EPS``; it knows
            its prompt, settings, layer, pair kind, k_in and k_out).
        key: what it was computed from.
    """

    ablation: _ablation.AblationResult
    key: RunKey

    @cached_property
    def table(self) -> pd.DataFrame:
        """``jsae.table.COLUMNS`` minus ``important``."""
        return self.ablation.table.drop(columns=["important"])

    @property
    def strings(self) -> list[str]:
        """The prompt's tokens as text (BOS first)."""
        return list(self.ablation.prompt.strings)

    @cached_property
    def positions(self) -> list[int]:
        """The token positions that were ablated (BOS excluded)."""
        return sorted(set(self.table["position"].tolist())) if len(self.table) else []

    @property
    def notice(self) -> str | None:
        """The truncation notice (``Prompt.notice``) or ``None``."""
        return self.ablation.prompt.notice

    def split(self, eps: float) -> pd.DataFrame:
        """The table with ``important`` = |J| > ε."""
        return _table.split(self.table, eps)

    def result(self, eps: float) -> _ablation.AblationResult:
        """This run as the ``AblationResult`` ``ablate`` returned, split at ε."""
        return self.ablation.with_eps(eps)


def run_ablation(
    source: Any,
    key: RunKey,
    progress: _ablation.ProgressCallback | None = None,
    sandwich: Sandwich | None = None,
    max_tokens: int | None = None,
) -> RunData:
    """Both experiments on ``key.text`` through ``source``'s ``key.kind`` pair at ``key.layer``.

    Calls ``jsae.ablation.ablate`` (looked up at call time) and drops the ε split.
    """
    config = _ablation.AblationConfig(mode=key.mode, scale=float(key.scale))
    result = _ablation.ablate(
        source.model,
        source.pair(key.layer, key.kind),
        key.text,
        eps=DEFAULT_EPS,
        config=config,
        progress=progress,
        max_tokens=max_tokens,
        sandwich=sandwich,
    )
    return RunData(result, key)


# --------------------------------------------------------------------------------------
# Histograms, verdicts, downloads


def symmetric_range(*arrays: np.ndarray) -> tuple[float, float]:
    """(−m, m) with m the largest |value| of all arrays (±1 when all are empty or zero)."""
    m = 0.0
    for values in arrays:
        values = np.asarray(values, dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size:
            m = max(m, float(np.abs(finite).max()))
    m = m if m > 0 else 1.0
    return -m, m


def data_range(*arrays: np.ndarray) -> tuple[float, float]:
    """(min, max) over all arrays, padded when degenerate; (0, 1) when all are empty."""
    lo, hi = math.inf, -math.inf
    for values in arrays:
        values = np.asarray(values, dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if not math.isfinite(lo):
        return 0.0, 1.0
    if hi <= lo:
        pad = max(abs(lo) * 0.05, 1e-6)
        return lo - pad, hi + pad
    return lo, hi


def histogram_bins(
    groups: Mapping[str, np.ndarray],
    bins: int = 60,
    value_range: tuple[float, float] | None = None,
    group_name: str = "experiment",
) -> pd.DataFrame:
    """Histogram counts per group on one shared set of bin edges, computed in numpy.

    Returns one row per non-empty bin: ``group_name``, ``bin_start``, ``bin_end``,
    ``count`` and ``share`` (count / the group's size). Empty bins are left out, so a
    log-scaled count axis never sees a zero. ``value_range`` defaults to the symmetric
    range of all values (``symmetric_range``).
    """
    if bins < 1:
        raise InputError(f"The number of bins must be at least 1, got {bins}.")
    lo, hi = value_range or symmetric_range(*groups.values())
    edges = np.linspace(lo, hi, bins + 1)
    frames = []
    for name, values in groups.items():
        values = np.asarray(values, dtype=np.float64)
        counts, _ = np.histogram(values[np.isfinite(values)], bins=edges)
        total = max(len(values), 1)
        keep = counts > 0
        frames.append(
            pd.DataFrame(
                {
                    group_name: name,
                    "bin_start": edges[:-1][keep],
                    "bin_end": edges[1:][keep],
                    "count": counts[keep].astype(np.int64),
                    "share": counts[keep] / total,
                }
            )
        )
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out.attrs["range"] = (float(lo), float(hi))
    return out


def diff_groups(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """The diffs of the important and the unimportant connections (needs ``important``)."""
    diff = table["diff"].to_numpy(dtype=np.float64)
    important = table["important"].to_numpy(dtype=bool)
    return {"important": diff[important], "unimportant": diff[~important]}


@dataclass(frozen=True)
class Verdict:
    """The one-line answer: do unimportant connections really not move?

    Args:
        level: ``"yes"``, ``"partly"``, ``"no"`` or ``"undetermined"``.
        ratio: mean |diff| of important over unimportant connections.
        sentence: the line to show.
    """

    level: str
    ratio: float
    sentence: str


def verdict(summary: pd.DataFrame, eps: float, strong: float = 10.0, weak: float = 2.0) -> Verdict:
    """Judge a ``stats.summarize`` table: ratio ≥ ``strong`` is a yes, ≥ ``weak`` partly."""
    ratio = importance_ratio(summary)
    n_imp = int(summary.loc["important", "connections"])
    n_unimp = int(summary.loc["unimportant", "connections"])
    if n_imp == 0:
        return Verdict(
            "undetermined",
            ratio,
            f"No connection has |J| > ε = {eps:g}, so there is nothing to compare: lower ε.",
        )
    if n_unimp == 0:
        return Verdict(
            "undetermined",
            ratio,
            f"Every connection has |J| > ε = {eps:g}, so there is nothing to compare: raise ε.",
        )
    imp = summary.loc["important", "mean_abs_diff"]
    unimp = summary.loc["unimportant", "mean_abs_diff"]
    share = n_unimp / (n_imp + n_unimp)
    detail = (
        f"mean |diff| {unimp:.3g} for the {share:.0%} of connections with |J| ≤ ε = {eps:g} "
        f"vs {imp:.3g} for those with |J| > ε"
    )
    if math.isinf(ratio):
        return Verdict(
            "yes", ratio, f"Yes: unimportant connections did not move at all ({detail})."
        )
    if ratio >= strong:
        return Verdict(
            "yes",
            ratio,
            f"Yes: unimportant connections barely move, {ratio:,.0f}× less than important "
            f"ones ({detail}).",
        )
    if ratio >= weak:
        return Verdict(
            "partly",
            ratio,
            f"Partly: unimportant connections move {ratio:.1f}× less than important ones "
            f"({detail}).",
        )
    return Verdict(
        "no",
        ratio,
        f"No: unimportant connections move about as much as important ones, ratio "
        f"{ratio:.2g} ({detail}).",
    )


def format_number(value: float, digits: int = 4) -> str:
    """How the app prints a statistic: ``—`` for NaN, ``∞`` for inf, else ``digits``
    significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}g}"


DOWNLOAD_FORMATS = _table.TABLE_FORMATS
table_bytes = _table.table_bytes


def parquet_available() -> bool:
    """Whether pandas can write Parquet here (pyarrow importable)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------
# Jacobian vs effect


def density_grid(
    x: np.ndarray,
    y: np.ndarray,
    bins: int = 80,
    value_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """A 2-D histogram of (x, y) on a square grid (same range on both axes), in numpy.

    Returns one row per non-empty cell: ``x_start``, ``x_end``, ``y_start``, ``y_end``,
    ``count``; the range is in ``attrs["range"]``.
    """
    if bins < 1:
        raise InputError(f"The number of bins must be at least 1, got {bins}.")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    lo, hi = value_range or data_range(x, y)
    edges = np.linspace(lo, hi, bins + 1)
    ok = np.isfinite(x) & np.isfinite(y)
    counts, _, _ = np.histogram2d(x[ok], y[ok], bins=[edges, edges])
    ix, iy = np.nonzero(counts)
    out = pd.DataFrame(
        {
            "x_start": edges[ix],
            "x_end": edges[ix + 1],
            "y_start": edges[iy],
            "y_end": edges[iy + 1],
            "count": counts[ix, iy].astype(np.int64),
        }
    )
    out.attrs["range"] = (float(lo), float(hi))
    return out


# The engine's columns, with ``miss`` in place of ``important`` (misses are all unimportant).
MISS_COLUMNS = (*(c for c in _table.COLUMNS if c != "important"), "miss")


def largest_misses(table: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """The unimportant connections (|J| ≤ ε) that moved most, by |diff|, with
    ``miss`` = |diff − predicted|. Needs the ``important`` column."""
    unimportant = table[~table["important"].to_numpy(dtype=bool)]
    if unimportant.empty:
        return pd.DataFrame(columns=list(MISS_COLUMNS))
    absdiff = np.abs(unimportant["diff"].to_numpy(dtype=np.float64))
    n = min(n, len(absdiff))
    top = np.argpartition(-absdiff, n - 1)[:n] if n < len(absdiff) else np.arange(len(absdiff))
    top = top[np.argsort(-absdiff[top], kind="stable")]
    out = unimportant.iloc[top].copy()
    out["miss"] = np.abs(out["diff"].to_numpy() - out["predicted"].to_numpy())
    out["token"] = out["token"].astype(str)
    return out[list(MISS_COLUMNS)].reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Token explorer


def token_connections(table: pd.DataFrame, position: int) -> pd.DataFrame:
    """The k_in × k_out connections of one token, with each feature's activation rank
    (0 = most active) and ``abs_jacobian``, in the engine's order."""
    rows = table[table["position"].to_numpy() == position].copy()
    if rows.empty:
        raise InputError(f"Position {position} was not ablated; pick another token.")
    in_order = list(dict.fromkeys(rows["in_feature"].tolist()))
    out_order = list(dict.fromkeys(rows["out_feature"].tolist()))
    rows["in_rank"] = rows["in_feature"].map({f: r for r, f in enumerate(in_order)})
    rows["out_rank"] = rows["out_feature"].map({f: r for r, f in enumerate(out_order)})
    rows["abs_jacobian"] = np.abs(rows["jacobian"].to_numpy())
    rows["token"] = rows["token"].astype(str)
    return rows.reset_index(drop=True)


def top_connections(rows: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """A token's connections with the largest |J| first."""
    return rows.sort_values("abs_jacobian", ascending=False, kind="stable").head(n)


def token_label(text: str) -> str:
    """A token as a short visible label (whitespace and newlines made visible)."""
    shown = text.replace("\n", "⏎").replace("\t", "⇥").replace(" ", "·")
    return shown if shown else "∅"


_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:")


def escape_markdown(text: str) -> str:
    """``text`` with Markdown's special characters backslash-escaped (for widget labels)."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in text)


MAX_TOKEN_CHIPS = 240
"""Prompts with more ablated tokens pick one with a slider instead of a strip of chips."""

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def token_chip(text: str, position: int) -> str:
    """A token's label in the token strip: visible whitespace, Markdown escaped, and its
    position as a subscript (which also keeps repeated tokens apart)."""
    return f"{escape_markdown(token_label(text))}{str(position).translate(_SUBSCRIPTS)}"


def token_context(strings: Sequence[str], position: int, width: int = 8) -> str:
    """Markdown for the text around ``position``, that token in bold (BOS left out)."""
    lo, hi = max(1, position - width), min(len(strings), position + width + 1)
    before = "".join(strings[lo:position])
    after = "".join(strings[position + 1 : hi])
    token = strings[position] if 0 <= position < len(strings) else ""
    return (
        ("… " if lo > 1 else "")
        + escape_markdown(before.replace("\n", "⏎ "))
        + f"**{escape_markdown(token_label(token))}**"
        + escape_markdown(after.replace("\n", "⏎ "))
        + (" …" if hi < len(strings) else "")
    )


@torch.no_grad()
def token_input(
    model: Any, layer: int, text: str, position: int, max_tokens: int | None = None
) -> Float[Tensor, " d_model"]:
    """The MLP input of block ``layer`` at ``position`` of the tokenized ``text`` (cut to
    ``max_tokens`` as the ablation cut it)."""
    prompt = tokenize(model, text, max_tokens=max_tokens)
    if not 0 <= position < len(prompt.tokens):
        raise InputError(
            f"Position {position} is outside the prompt (0..{len(prompt.tokens) - 1})."
        )
    return mlp_inputs(model, prompt.tokens, layer)[position]


@dataclass
class DoseResponse:
    """The output feature's activation along a sweep of the input feature's activation.

    Args:
        curve: ``in_act`` (the swept a′) and ``out_act`` (after top-k re-selection).
        actual_in: the input feature's actual activation a on this token (0 if inactive).
        actual_out: the output feature's activation at a′ = a.
        jacobian: J[out_feature, in_feature] at the actual point (d out_pre / d a).
        in_feature, out_feature: the connection.
    """

    curve: pd.DataFrame
    actual_in: float
    actual_out: float
    jacobian: float
    in_feature: int
    out_feature: int


@torch.no_grad()
def dose_response(
    sandwich: Sandwich,
    x: Float[Tensor, " d_model"],
    in_feature: int,
    out_feature: int,
    points: int = 121,
    a_max: float | None = None,
) -> DoseResponse:
    """Sweep input feature i's activation a′ from 0 to max(5, a + 1) with the rest of the
    token fixed, x(a′) = x + (a′ − a) · W_dec_in[i], and read output feature j after the
    MLP and the output SAE's top-k re-selection (0 when j leaves the top k), as the
    ablation engine does."""
    pair = sandwich.pair
    for name, feature, size in (
        ("input", in_feature, pair.d_sae_in),
        ("output", out_feature, pair.d_sae_out),
    ):
        if not 0 <= int(feature) < size:
            raise InputError(f"The {name} feature must be in 0..{size - 1}, got {feature}.")
    if points < 2:
        raise InputError("The sweep needs at least 2 points.")
    x = x.to(sandwich.mlp.W_in.dtype)
    base = sandwich(x[None])
    in_idx = base.in_idx[0].tolist()
    out_idx = base.out_idx[0].tolist()
    a = float(base.in_act[0, in_idx.index(in_feature)]) if in_feature in in_idx else 0.0
    top = max(5.0, a + 1.0) if a_max is None else float(a_max)
    grid = np.unique(np.append(np.linspace(0.0, top, points), a))
    delta = torch.tensor(grid - a, dtype=base.pre.dtype)
    pre = base.pre[0] + delta[:, None] * sandwich.dec_in_W_in[in_feature]
    out_pre = sandwich.out_pre(sandwich.mlp.out_from_pre(pre))
    top_idx = torch.topk(out_pre, k=pair.k_out, dim=-1, sorted=False).indices
    active = (top_idx == out_feature).any(dim=-1)
    y = torch.where(
        active, out_pre[:, out_feature].relu(), torch.zeros_like(active, dtype=pre.dtype)
    )
    curve = pd.DataFrame({"in_act": grid, "out_act": y.double().numpy()})
    actual_out = float(curve.loc[np.argmin(np.abs(grid - a)), "out_act"])
    if in_feature in in_idx and out_feature in out_idx:
        jac = float(base.jacobian[0, out_idx.index(out_feature), in_idx.index(in_feature)])
    else:
        jac = math.nan
    return DoseResponse(curve, a, actual_out, jac, int(in_feature), int(out_feature))


@dataclass(frozen=True)
class CurveShape:
    """How a dose-response curve looks.

    Args:
        label: ``"linear"``, ``"jumprelu"`` (zero on one side of a threshold, linear on the
            other) or ``"other"``.
        description: a sentence for the page.
        slope: the slope of the linear part (NaN for ``"other"``).
        threshold: where a JumpReLU-like curve switches (NaN otherwise).
        jump: the linear part's value at the threshold (0 for a plain ReLU kink).
        r2: R² of the linear fit that decided.
    """

    label: str
    description: str
    slope: float = math.nan
    threshold: float = math.nan
    jump: float = math.nan
    r2: float = math.nan


CURVE_LABELS = {"linear": "linear", "jumprelu": "JumpReLU-like", "other": "other"}


def _linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares slope, intercept and R² (1 when y is fit exactly)."""
    if len(x) < 2 or np.ptp(x) == 0:
        return 0.0, float(np.mean(y)) if len(y) else 0.0, math.nan
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    ss_res = float(resid @ resid)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    scale = max(float(np.abs(y).max()), 1e-12)
    if ss_res <= (1e-9 * scale) ** 2 * len(y):
        r2 = 1.0
    elif ss_tot == 0:
        r2 = 0.0
    else:
        r2 = 1.0 - ss_res / ss_tot
    return float(slope), float(intercept), float(r2)


def classify_curve(
    a: np.ndarray,
    y: np.ndarray,
    r2_min: float = 0.99,
    zero_tol: float | None = None,
    min_points: int = 3,
) -> CurveShape:
    """Classify a dose-response curve y(a) as linear, JumpReLU-like or other.

    * linear: one straight line fits all points (R² ≥ ``r2_min``), a flat line included;
    * JumpReLU-like: y is zero on [0, t) and a straight line from t on (a ReLU or top-k
      gate switching on, with or without a jump), or the mirror image (linear, then zero
      from t on: the gate switching off);
    * other: anything else (curved, bumpy, several switches).

    ``zero_tol`` defaults to 1e-6 + 1e-3 · max|y|.
    """
    a = np.asarray(a, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if a.shape != y.shape or a.ndim != 1 or len(a) < 2:
        raise InputError("A curve needs matching 1-D arrays of at least 2 points.")
    order = np.argsort(a, kind="stable")
    a, y = a[order], y[order]
    peak = float(np.abs(y).max())
    tol = (1e-6 + 1e-3 * peak) if zero_tol is None else zero_tol
    zero = np.abs(y) <= tol
    if zero.all():
        return CurveShape("linear", "Flat at zero over the whole sweep.", 0.0, r2=1.0)

    nonzero = np.flatnonzero(~zero)
    first, last = int(nonzero[0]), int(nonzero[-1])
    # Zero below a threshold, then linear.
    if first >= 2 and len(a) - first >= min_points and not zero[first:].any():
        slope, intercept, r2 = _linear_fit(a[first:], y[first:])
        if r2 >= r2_min:
            t = 0.5 * (a[first - 1] + a[first])
            jump = slope * t + intercept
            return CurveShape(
                "jumprelu",
                f"Zero below a′ ≈ {t:.3g}, then linear (slope {slope:.3g}"
                + (f", jump {jump:.3g} at the threshold)." if abs(jump) > 10 * tol else ")."),
                slope,
                t,
                jump,
                r2,
            )
    # Linear, then zero from a threshold on.
    if len(a) - 1 - last >= 2 and last + 1 >= min_points and not zero[: last + 1].any():
        slope, intercept, r2 = _linear_fit(a[: last + 1], y[: last + 1])
        if r2 >= r2_min:
            t = 0.5 * (a[last] + a[last + 1])
            jump = slope * t + intercept
            return CurveShape(
                "jumprelu",
                f"Linear (slope {slope:.3g}), then zero above a′ ≈ {t:.3g}: the output "
                "feature switches off.",
                slope,
                t,
                jump,
                r2,
            )
    slope, intercept, r2 = _linear_fit(a, y)
    if r2 >= r2_min:
        return CurveShape("linear", f"Linear, slope {slope:.3g} (R² = {r2:.4f}).", slope, r2=r2)
    return CurveShape(
        "other",
        f"Neither linear nor zero-then-linear (a straight line explains R² = {r2:.2f}).",
        r2=r2,
    )


# --------------------------------------------------------------------------------------
# JSAE vs plain


def log_abs_jacobian(values: np.ndarray, floor: float = 1e-12) -> np.ndarray:
    """log10 |J|, with exact zeros mapped to log10(floor)."""
    values = np.abs(np.asarray(values, dtype=np.float64))
    return np.log10(np.maximum(values, floor))
