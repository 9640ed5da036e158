"""Jacobian vs effect: how well the first-order prediction −s·J matches the measured diff.

Shares of connections within tolerance per group, the chart's common range for predicted
and measured values (dots for a few connections, a density grid for many; both keep the
connections whose output feature left the top k apart, as they lie on the band diff =
−out_act that no derivative sees), and the largest misses as rows that link to the token
explorer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jsae.explore.binning import data_range, density_grid
from jsae.explore.tokens import token_label
from jsae.explore.view import view_link
from jsae.stats import Tolerance, within_tolerance
from jsae.table import exited_flags

SCATTER_MAX = 3000
"""Up to this many connections are drawn as dots; more as a binned density heatmap."""


@dataclass(frozen=True)
class Agreement:
    """How many connections of one group lie within tolerance of −s·J.

    Args:
        group: ``"all"``, ``"important"`` (|J| > ε) or ``"unimportant"`` (|J| ≤ ε).
        within: how many are within tolerance.
        total: how many there are.
    """

    group: str
    within: int
    total: int

    @property
    def share(self) -> float | None:
        """within / total, None for an empty group."""
        return self.within / self.total if self.total else None


def agreement(table: pd.DataFrame, tolerance: Tolerance) -> list[Agreement]:
    """Within-tolerance counts for all, important and unimportant connections (needs
    ``important``)."""
    within = within_tolerance(table, tolerance)
    important = table["important"].to_numpy(dtype=bool)
    return [
        Agreement(group, int(within[mask].sum()), int(within[mask].size))
        for group, mask in (
            ("all", np.ones_like(important)),
            ("important", important),
            ("unimportant", ~important),
        )
    ]


def draws_dots(table: pd.DataFrame) -> bool:
    """Whether the effect chart draws one dot per connection (else a density grid)."""
    return len(table) <= SCATTER_MAX


def effect_range(table: pd.DataFrame) -> tuple[float, float]:
    """The range shared by both axes of the effect chart: predicted and diff."""
    return data_range(table["predicted"].to_numpy(), table["diff"].to_numpy())


def effect_grid(table: pd.DataFrame, bins: int) -> pd.DataFrame:
    """predicted against diff on a ``bins`` × ``bins`` grid, each axis over its own data's
    range (``data_range`` of predicted, of diff: predictions far smaller than the diffs
    still fill the width), counted apart for the connections whose output feature left the
    top k: one row per non-empty cell and ``exited`` value (a table without ``exited``
    counts every connection as staying). The ranges are in ``attrs["range"]`` (x) and
    ``attrs["y_range"]``."""
    x, y = table["predicted"].to_numpy(), table["diff"].to_numpy()
    x_range, y_range = data_range(x), data_range(y)
    exited = exited_flags(table)
    grids = [
        density_grid(
            x[exited == flag], y[exited == flag], bins=bins, value_range=x_range, y_range=y_range
        ).assign(exited=flag)
        for flag in (False, True)
    ]
    out = pd.concat(grids, ignore_index=True)
    out.attrs["range"], out.attrs["y_range"] = x_range, y_range
    return out


def miss_links(misses: pd.DataFrame, page: str, params: Mapping[str, str]) -> list[str]:
    """A link per miss to ``page`` (the token explorer) with the view's query parameters
    and the miss's position, input and output feature."""
    return [
        view_link(
            page,
            params,
            position=int(r.position),
            in_feature=int(r.in_feature),
            out_feature=int(r.out_feature),
        )
        for r in misses.itertuples()
    ]


MISS_UP_FRONT = ("open", "diff", "miss", "exited", "predicted", "jacobian")
"""The misses table's key columns, shown first so a narrow screen still shows them: the row's
link, how far it moved, how far from its prediction, whether it is an exit, the prediction
and J; where it is (position, token, features) and the rest follow."""


def miss_display_order(misses: pd.DataFrame) -> list[str]:
    """The misses table's columns in display order: ``MISS_UP_FRONT`` first (those it has),
    the rest as they are."""
    front = [c for c in MISS_UP_FRONT if c in misses.columns]
    return [*front, *(c for c in misses.columns if c not in MISS_UP_FRONT)]


def miss_labels(misses: pd.DataFrame) -> list[str]:
    """One line per miss, numbered from 1, for a picker."""
    return [
        f"#{i + 1}: position {r.position} ({token_label(r.token)}), "
        f"in_feature {r.in_feature} → out_feature {r.out_feature}, diff {r.diff:.3g}"
        for i, r in enumerate(misses.itertuples())
    ]
