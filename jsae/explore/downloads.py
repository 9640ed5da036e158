"""Downloads of a run's tables (the formats and their writer are ``jsae.table``'s): its
connections, the joint ablation's sets and curves, and one connection's dose-response
curve."""

from __future__ import annotations

from jsae.errors import InputError
from jsae.explore.runs import RunKey


def parquet_available() -> bool:
    """Whether pandas can write Parquet here (pyarrow importable)."""
    try:  # imported here: the answer is whether the import works
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


DOWNLOADED = ("connections", "joint_sets", "faithfulness_curves")
"""The tables a run downloads: every connection (``jsae.table``), the joint ablation's rows
(``jsae.analysis.set_frame``) and its curves (``JointStatistics.curves``)."""


def download_name(key: RunKey, fmt: str, table: str = "connections") -> str:
    """The file name a run's ``table`` (one of ``DOWNLOADED``) downloads as, e.g.
    ``jsae_connections_layer1_jsae_unit.csv``."""
    if table not in DOWNLOADED:
        raise InputError(f"Unknown table {table!r}: use one of {', '.join(DOWNLOADED)}.")
    return f"jsae_{table}_layer{key.layer}_{key.kind}_{key.mode}.{fmt}"


def dose_download_name(
    key: RunKey, position: int, in_feature: int, out_feature: int, fmt: str = "csv"
) -> str:
    """The file name of one connection's dose-response curve (``jsae.dose.DoseResponse.
    curve``), e.g. ``jsae_dose_response_layer1_jsae_pos3_in12_out40.csv``."""
    where = f"pos{position}_in{in_feature}_out{out_feature}"
    return f"jsae_dose_response_layer{key.layer}_{key.kind}_{where}.{fmt}"
