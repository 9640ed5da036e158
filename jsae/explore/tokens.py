"""The token explorer's helpers: one token's connections, token labels for widgets and
Markdown, a token's MLP input, and a link's selection checked against a run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from jsae.analysis import edge_flags
from jsae.errors import InputError
from jsae.prompt import mlp_inputs, tokenize


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


def mark_true_edges(rows: pd.DataFrame, edges: pd.DataFrame | None) -> pd.DataFrame:
    """``rows`` with ``true_edge``: the connection is one of ``edges`` (the source's true
    edges in the pair's feature ids, ``Source.true_edges``); unchanged when ``edges`` is
    None."""
    if edges is None:
        return rows
    return rows.assign(true_edge=edge_flags(rows, edges))


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


def connection_options(rows: pd.DataFrame) -> dict[tuple[int, int], float]:
    """A token's connections as (in_feature, out_feature) -> J, largest |J| first."""
    ranked = top_connections(rows, n=len(rows))
    options = zip(ranked["in_feature"].tolist(), ranked["out_feature"].tolist(), strict=True)
    return dict(
        zip(((int(i), int(o)) for i, o in options), ranked["jacobian"].tolist(), strict=True)
    )


@dataclass(frozen=True)
class LinkedSelection:
    """What a link's token selection (position, in_feature, out_feature) selects in a run.

    Args:
        position: the token to select, or None when the link's position was not ablated.
        connection: the (in_feature, out_feature) to select, or None for the token's
            strongest (none asked for, or not one of the token's connections).
        warning: what to tell the user about the parts of the link that were dropped.
    """

    position: int | None
    connection: tuple[int, int] | None = None
    warning: str | None = None


def linked_selection(
    table: pd.DataFrame,
    position: int | None,
    in_feature: int | None = None,
    out_feature: int | None = None,
) -> LinkedSelection:
    """Check a link's selection against a run's table (BOS is never ablated)."""
    positions = sorted(set(table["position"].tolist()))
    if position not in positions:
        return LinkedSelection(
            None,
            warning=f"Position {position} was not ablated in this prompt; pick a token below "
            f"(positions {positions[0]}–{positions[-1]}).",
        )
    if in_feature is None or out_feature is None:
        return LinkedSelection(position)
    wanted = (in_feature, out_feature)
    if wanted in connection_options(token_connections(table, position)):
        return LinkedSelection(position, wanted)
    return LinkedSelection(
        position,
        warning=f"in_feature {in_feature} → out_feature {out_feature} is not a connection of "
        f"position {position}; showing its strongest one.",
    )
