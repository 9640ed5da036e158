"""Download buttons for a run's tables: the file is written only when clicked, and a
failure is shown (as ``st.error``) on the next rerun, since the click itself draws nothing."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.guard import error_message
from jsae.provenance import Provenance
from jsae.table import TABLE_FORMATS, table_bytes

ERRORS = "_download_errors"
"""The session-state key of the failed downloads: {file name: message}."""


def show_download_errors() -> None:
    """The downloads that failed since the last rerun, each once."""
    errors: dict[str, str] = st.session_state.setdefault(ERRORS, {})
    for name, message in list(errors.items()):
        st.error(f"The download of {name} failed: {message}", icon=":material/error:")
        errors.pop(name, None)


def download_button(
    column,
    table: pd.DataFrame,
    fmt: str,
    label: str,
    file_name: str,
    provenance: Provenance | None = None,
) -> None:
    """A button that downloads ``table`` as ``fmt`` (``jsae.table.TABLE_FORMATS``), Parquet
    with ``provenance`` in its metadata (``jsae.provenance``)."""
    errors: dict[str, str] = st.session_state.setdefault(ERRORS, {})

    def produce() -> bytes:
        try:
            return table_bytes(table, fmt, provenance)
        except Exception as err:  # shown as st.error on the next rerun
            errors[file_name] = error_message(err, f"writing the {fmt} file")
            raise

    column.download_button(
        label,
        produce,
        file_name=file_name,
        mime=TABLE_FORMATS[fmt],
        icon=":material/download:",
        on_click="ignore",
        width="stretch",
    )
