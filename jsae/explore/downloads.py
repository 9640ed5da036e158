"""Downloads of a run's table (the formats and their writer are ``jsae.table``'s)."""

from __future__ import annotations

from jsae.explore.runs import RunKey


def parquet_available() -> bool:
    """Whether pandas can write Parquet here (pyarrow importable)."""
    try:  # imported here: the answer is whether the import works
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def download_name(key: RunKey, fmt: str) -> str:
    """The file name a run's table downloads as, e.g.
    ``jsae_connections_layer1_jsae_unit.csv``."""
    return f"jsae_connections_layer{key.layer}_{key.kind}_{key.mode}.{fmt}"
