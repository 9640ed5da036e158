"""Altair chart builders for the explorer: pure functions, small DataFrame in, chart out.

Every builder takes data that is already binned or aggregated (``jsae.explore``), so a
million connections chart as instantly as a hundred: the browser only ever receives the
bins. One module per page (``causal``, ``effect``, ``token``, ``compare``; ``joint`` for the
joint ablation's, on two pages) and what they
share (``common``); everything is exported here, so ``from jsae import charts;
charts.diff_histogram(...)`` works. Tested through ``chart.to_dict()``.
"""

from jsae.charts.causal import (
    EXIT_BAND_LABEL,
    capture_curves,
    decomposition_bars,
    diff_histogram,
    diff_histogram_panels,
)
from jsae.charts.common import (
    BIN_SELECTION,
    DENSITY_SELECTION,
    DIFF_TITLE,
    EXIT_COLOR,
    EXIT_LABEL,
    EXPERIMENT_COLORS,
    EXPERIMENT_ORDER,
    HIGHLIGHT,
    INK,
    KIND_COLORS,
    KIND_ORDER,
    PART_COLORS,
    REGION_SELECTION,
    kind_colors,
)
from jsae.charts.compare import eps_rule, eps_sweep_charts, jacobian_histogram
from jsae.charts.effect import effect_density, effect_scatter
from jsae.charts.graph import EDGE_SELECTION, card_histogram, connection_graph_chart
from jsae.charts.joint import (
    ORDER_COLORS,
    SET_COLORS,
    downstream_comparison,
    faithfulness_comparison,
    faithfulness_curves,
    set_histogram,
    set_histogram_panels,
)
from jsae.charts.token import (
    CELL_SELECTION,
    DOSE_PRE,
    DOSE_SERIES,
    dose_response_chart,
    jacobian_heatmap,
    margin_chart,
)

__all__ = [
    "CELL_SELECTION",
    "DIFF_TITLE",
    "EDGE_SELECTION",
    "DOSE_PRE",
    "DOSE_SERIES",
    "EXIT_COLOR",
    "HIGHLIGHT",
    "INK",
    "EXIT_LABEL",
    "BIN_SELECTION",
    "DENSITY_SELECTION",
    "REGION_SELECTION",
    "EXIT_BAND_LABEL",
    "EXPERIMENT_COLORS",
    "EXPERIMENT_ORDER",
    "KIND_COLORS",
    "ORDER_COLORS",
    "SET_COLORS",
    "KIND_ORDER",
    "PART_COLORS",
    "kind_colors",
    "capture_curves",
    "card_histogram",
    "connection_graph_chart",
    "decomposition_bars",
    "diff_histogram",
    "diff_histogram_panels",
    "dose_response_chart",
    "effect_density",
    "effect_scatter",
    "eps_rule",
    "downstream_comparison",
    "faithfulness_comparison",
    "faithfulness_curves",
    "set_histogram",
    "set_histogram_panels",
    "eps_sweep_charts",
    "jacobian_heatmap",
    "jacobian_histogram",
    "margin_chart",
]
