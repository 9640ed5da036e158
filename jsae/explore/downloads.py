"""Downloads of a run's table (the formats and their writer are ``jsae.table``'s)."""

from __future__ import annotations


def parquet_available() -> bool:
    """Whether pandas can write Parquet here (pyarrow importable)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True
