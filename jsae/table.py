"""The per-connection table: its schema, the ε split, how it is built and how it is written.

One row per (token, input feature i, output feature j) connection of a run: the engine returns
them as flat tensors (``Connections``), the table is their tidy pandas form. The split is the
research notebook's: a connection is *important* when |J[j, i]| > ε and *unimportant* when
|J[j, i]| <= ε. Everything that divides connections by ε — the engine's table, corpus shards,
merged corpus statistics, the bundle's quality figures — calls ``is_important``, so the rule
lives here once.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import pandas as pd
from jaxtyping import Bool, Float, Int
from torch import Tensor

from jsae.errors import InputError, os_reason
from jsae.provenance import PROVENANCE_KEY, Provenance, write_sidecar

COLUMN_TYPES = {
    "position": "int",
    "token": "str",
    "in_feature": "int",
    "out_feature": "int",
    "in_act": "float",
    "out_act": "float",
    "jacobian": "float",
    "predicted": "float",
    "diff": "float",
    "pre_diff": "float",
    "curvature": "float",
    "gate": "float",
    "exited": "bool",
    "entered": "int",
    "margin": "float",
    "important": "bool",
}
"""The table's schema: every column, in order, with its kind (ids are int32, values float32,
``token`` a categorical string)."""

COLUMNS = tuple(COLUMN_TYPES)
"""The table's columns, in order.

``diff`` splits exactly into three parts, diff = predicted + curvature + gate:

* ``predicted`` = -s·J, the linear part (J is the derivative of the pre-activation);
* ``curvature`` = pre_diff - predicted, the rest of the un-gated change of the output
  feature's pre-activation (``pre_diff``);
* ``gate`` = diff - pre_diff, what the top-k re-selection and the ReLU did: -out_act -
  pre_diff when the feature left the top k (``exited``), 0 while it stays active and positive.

``entered`` is the strongest feature that took a place in the perturbed row's top k (-1:
none), ``margin`` how far above the best inactive feature the output feature sat before the
perturbation, and ``important`` is |J| > ε at the table's ε."""

INT_COLUMNS = tuple(name for name, kind in COLUMN_TYPES.items() if kind == "int")
FLOAT_COLUMNS = tuple(name for name, kind in COLUMN_TYPES.items() if kind == "float")
BOOL_COLUMNS = tuple(name for name, kind in COLUMN_TYPES.items() if kind == "bool")

PROMPT_COLUMN = "prompt"
"""A batch's table (``jsae.result.AblationBatch``) starts with this column: each row's prompt,
as its index in the list given (int32); a token is then (prompt, position)."""

DOCUMENT_COLUMN, WINDOW_COLUMN = "document", "window"
"""A corpus shard's table (``jsae.corpus``) starts with these: each row's document id (its
file's path in the corpus, or its row number in a dataset) and its window's number there; a
token is then (document, window, position)."""

TOKEN_KEYS = (PROMPT_COLUMN, DOCUMENT_COLUMN, WINDOW_COLUMN, "position")
"""The columns that name a row's token, in order; a table has ``position`` and those of the
others its kind of run writes."""

DEFAULT_EPS = 0.01
"""ε when none is given: connections with |J| above it are important."""

TABLE_FORMATS = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}
"""Formats the table is written in (file suffix without the dot -> MIME type)."""

ArrayT = TypeVar("ArrayT")


@dataclass
class Connections:
    """Every connection of a run as flat tensors, ordered (position, in rank, out rank).

    Args:
        position: the token position each connection belongs to.
        in_feature, out_feature: the input and output SAE feature ids.
        in_act, out_act: their activations on the unperturbed token.
        jacobian: J[out_feature, in_feature] on that token.
        predicted: the first-order prediction of diff, -s * J.
        diff: out_act after the perturbation minus out_act before.
        pre_diff: the output feature's pre-activation after minus before, un-gated.
        exited: the output feature left the top k (then diff = -out_act).
        entered: the strongest feature that entered the perturbed row's top k (-1: none).
        margin: the output feature's pre-activation minus the best inactive one, unperturbed.
    """

    position: Int[Tensor, " n"]
    in_feature: Int[Tensor, " n"]
    out_feature: Int[Tensor, " n"]
    in_act: Float[Tensor, " n"]
    out_act: Float[Tensor, " n"]
    jacobian: Float[Tensor, " n"]
    predicted: Float[Tensor, " n"]
    diff: Float[Tensor, " n"]
    pre_diff: Float[Tensor, " n"]
    exited: Bool[Tensor, " n"]
    entered: Int[Tensor, " n"]
    margin: Float[Tensor, " n"]


def check_eps(eps: object) -> float:
    """ε must be a finite number greater than 0."""
    if isinstance(eps, bool):
        raise InputError(f"ε must be a number, got {eps!r}.")
    try:
        value = float(eps)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"ε must be a number, got {eps!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"ε must be a finite number greater than 0, got {eps!r}.")
    return value


def is_important(jacobian: ArrayT, eps: float) -> ArrayT:
    """|J| > ε, elementwise: the one definition of an important connection.

    Works on numpy arrays, pandas Series and torch tensors alike (a boolean of the same kind).
    """
    return abs(jacobian) > eps  # type: ignore[operator,return-value]


def exited_flags(table: pd.DataFrame) -> np.ndarray:
    """Whether each connection's output feature left the top k (``exited``), all False for a
    table without the column (one written before the decomposition, or a bare test frame):
    the one rule the density grid, its cells' drill-down, the scatter and the graph share."""
    if "exited" in table:
        return table["exited"].to_numpy(dtype=bool)
    return np.zeros(len(table), dtype=bool)


def split(table: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Set ``important`` = |J| > ε (so |J| <= ε is unimportant). Returns a new frame."""
    eps = check_eps(eps)
    out = table.copy(deep=False)
    out["important"] = is_important(table["jacobian"].to_numpy(), eps)
    return out


def connection_columns(connections: Connections) -> dict[str, np.ndarray]:
    """The engine's flat tensors as numpy columns in ``COLUMNS`` order: ids as int32, values
    as float32, ``curvature`` and ``gate`` derived (``token`` and ``important`` are left to the
    caller, who knows the token strings and ε)."""
    columns: dict[str, np.ndarray] = {}
    for name in COLUMNS:
        if name in ("token", "important", "curvature", "gate"):
            continue
        value = getattr(connections, name)
        if name in INT_COLUMNS:
            columns[name] = value.numpy().astype(np.int32)
        elif name in BOOL_COLUMNS:
            columns[name] = value.numpy().astype(bool)
        else:
            columns[name] = value.float().numpy()
    # In float64, then rounded once: the three parts add up to diff to float32 rounding
    pre_diff = columns["pre_diff"].astype(np.float64)
    columns["curvature"] = (pre_diff - columns["predicted"]).astype(np.float32)
    columns["gate"] = (columns["diff"] - pre_diff).astype(np.float32)
    return {name: columns[name] for name in COLUMNS if name in columns}


def connections_table(connections: Connections, strings: list[str], eps: float) -> pd.DataFrame:
    """The tidy per-connection DataFrame, columns ``COLUMNS``; ``strings`` are the prompt's
    tokens as text (``token`` becomes a categorical column)."""
    columns = connection_columns(connections)
    categories = list(dict.fromkeys(strings))
    code_of = {text: code for code, text in enumerate(categories)}
    codes = np.array([code_of[text] for text in strings], dtype=np.int32)
    token = pd.Categorical.from_codes(codes[columns["position"]], categories=categories)
    table = pd.DataFrame({"position": columns.pop("position"), "token": token, **columns})
    return split(table, eps)


def table_format(path: str | os.PathLike, what: str = "The output file") -> str:
    """The format a file name asks for by its suffix, or an error naming the choices."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in TABLE_FORMATS:
        choices = " or ".join(f".{f}" for f in TABLE_FORMATS)
        raise InputError(
            f"{what} must end in {choices}, got {Path(path).name!r}; the extension picks the format."
        )
    return fmt


def write_table(
    table: pd.DataFrame,
    target: str | os.PathLike | IO[Any],
    fmt: str,
    provenance: Provenance | None = None,
) -> None:
    """Write the table as CSV or Parquet to a path or a binary file object, with its
    ``provenance`` (``jsae.provenance``): Parquet key-value metadata, or a ``.json`` sidecar
    beside a CSV file (a CSV written to a file object carries none)."""
    if fmt not in TABLE_FORMATS:
        raise InputError(f"Unknown download format {fmt!r}; use one of {', '.join(TABLE_FORMATS)}.")
    if isinstance(target, str | os.PathLike):
        target = Path(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"Could not write {target}: {os_reason(err)}.") from None
    try:
        if fmt == "csv":
            table.to_csv(target, index=False, encoding="utf-8")
            if provenance is not None and isinstance(target, Path):
                write_sidecar(provenance, target)
        else:
            _write_parquet(table, target, provenance)
    except ImportError as err:
        raise InputError(
            f"Parquet export needs pyarrow ({err}); install it with `pip install pyarrow`, "
            "or use CSV."
        ) from None
    except OSError as err:
        raise InputError(f"Could not write {target}: {os_reason(err)}.") from None


def _write_parquet(
    table: pd.DataFrame, target: Path | IO[Any], provenance: Provenance | None
) -> None:
    """``table.to_parquet(target, index=False)``, with the provenance in the file's
    key-value metadata."""
    import pyarrow as pa  # here: pandas imports it only for Parquet too
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    if provenance is not None:
        metadata = {**(arrow.schema.metadata or {}), PROVENANCE_KEY.encode(): provenance.to_json()}
        arrow = arrow.replace_schema_metadata(metadata)
    pq.write_table(arrow, target)


def table_bytes(table: pd.DataFrame, fmt: str, provenance: Provenance | None = None) -> bytes:
    """The table as CSV or Parquet bytes (for a download button); Parquet records
    ``provenance``."""
    buffer = io.BytesIO()
    write_table(table, buffer, fmt, provenance)
    return buffer.getvalue()
