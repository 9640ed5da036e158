"""The explorer's logic, free of Streamlit: view state in the URL, runs, binning, verdicts,
largest misses and the token explorer's helpers (its dose-response curve is the engine's,
``jsae.dose``).

The app's pages read widgets, call these functions and draw what they return (the charts
come from ``jsae.charts``). Everything here is plain numpy / pandas / torch and is tested
without a browser.
"""

from jsae.explore.binning import (
    data_range,
    density_grid,
    histogram_bins,
    log_abs_jacobian,
    symmetric_range,
)
from jsae.explore.choices import (
    CUSTOM_PROMPT,
    DEFAULT_SCALE,
    DEFAULT_SOURCE_ENV,
    EPS_GRID,
    FALLBACK_PROMPTS,
    MODE_LABELS,
    SOURCE_TYPE_LABELS,
    SOURCE_TYPES,
    default_prompts,
    default_source,
    kinds_at,
    nearest_eps_stop,
    resolve_pair,
    source_type,
)
from jsae.explore.downloads import parquet_available
from jsae.explore.runs import RunData, RunKey, run_ablation
from jsae.explore.tokens import (
    MAX_TOKEN_CHIPS,
    escape_markdown,
    token_chip,
    token_connections,
    token_context,
    token_input,
    token_label,
    top_connections,
)
from jsae.explore.verdicts import MISS_COLUMNS, Verdict, format_number, largest_misses, verdict
from jsae.explore.view import (
    MAX_URL_TEXT,
    ViewState,
    parse_query_params,
    to_query_params,
    view_link,
)

__all__ = [
    "CUSTOM_PROMPT",
    "DEFAULT_SCALE",
    "DEFAULT_SOURCE_ENV",
    "EPS_GRID",
    "FALLBACK_PROMPTS",
    "MAX_TOKEN_CHIPS",
    "MAX_URL_TEXT",
    "MISS_COLUMNS",
    "MODE_LABELS",
    "SOURCE_TYPES",
    "SOURCE_TYPE_LABELS",
    "RunData",
    "RunKey",
    "Verdict",
    "ViewState",
    "data_range",
    "default_prompts",
    "default_source",
    "density_grid",
    "escape_markdown",
    "format_number",
    "histogram_bins",
    "kinds_at",
    "largest_misses",
    "log_abs_jacobian",
    "nearest_eps_stop",
    "parquet_available",
    "parse_query_params",
    "resolve_pair",
    "run_ablation",
    "source_type",
    "symmetric_range",
    "to_query_params",
    "token_chip",
    "token_connections",
    "token_context",
    "token_input",
    "token_label",
    "top_connections",
    "verdict",
    "view_link",
]
