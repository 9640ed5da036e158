"""Where each experiment's movement comes from: the split of diff into its three parts, and
how often the output feature left the top k.

The engine splits every connection's diff exactly into three parts (``jsae.table.COLUMNS``):

    diff = predicted + curvature + gate

* ``predicted`` = −s·J, the linear part (what the Jacobian sees);
* ``curvature`` = pre_diff − predicted, the rest of the continuous (un-gated) change of the
  output feature's pre-activation;
* ``gate`` = diff − pre_diff, what the top-k re-selection and the ReLU did: nearly all of
  −out_act when the output feature left the top k (an *exit*), 0 while it stays active.

**The mass split** (``decomposition``). For a group G of connections (important: |J| > ε,
unimportant: |J| ≤ ε) and a part p, the part's *mass* is M_p = Σ_{c∈G} |p_c|, and its
*share* is M_p / (M_predicted + M_curvature + M_gate): how much of the movement's
magnitude, summed before the parts can cancel, each part carries. Shares lie in [0, 1]
and add up to 1 per group, so they stack into one bar per group. Parts of one connection
can cancel (a linear push the curvature takes back), so the shares are of Σ_p M_p, which
is at least Σ|diff|; ``cancelled`` = 1 − Σ|diff| / Σ_p M_p says how much of it cancelled
(0: none).

The exact alternative is kept beside it: the *signed share* Σ_c sign(diff_c)·p_c / Σ_c
|diff_c|, each part's contribution to Σ|diff| itself. The signed shares add up to exactly 1,
but a part that works against the movement gets a negative share.

**Exits** (``exit_rates``): P(exit) = (connections whose output feature left the top k) /
(connections), and the share of the group's Σ|diff| that those connections carry, per
experiment, by the analysis layer's own definitions (``jsae.analysis.p_exit`` and
``exit_mass_share``, the numbers ``jsae ablate`` and the corpus statistics print).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jsae.analysis.statistics import exit_mass_share, p_exit
from jsae.errors import InputError

PARTS = {
    "gate": "exits (gate)",
    "predicted": "linear (−s·J)",
    "curvature": "curvature",
}
"""The parts of diff (table columns) and their labels, in the order they stack."""

GROUPS = {"important": True, "unimportant": False}
"""The experiments (groups of connections) and their ``important`` value."""

NEEDED = ("diff", "important", "exited", *PARTS)


def _check(table: pd.DataFrame) -> None:
    missing = [c for c in NEEDED if c not in table.columns]
    if missing:
        raise InputError(
            f"The table lacks {', '.join(missing)}: it predates the diff decomposition; "
            "rerun the ablation."
        )


def _groups(table: pd.DataFrame):
    important = table["important"].to_numpy(dtype=bool)
    for name, value in GROUPS.items():
        yield name, table[important == value]


def decomposition(table: pd.DataFrame) -> pd.DataFrame:
    """The mass split of diff per experiment (see the module docstring).

    Args:
        table: a table split at ε (``important``) with the decomposition columns.

    Returns:
        One row per (experiment, part) for every experiment with connections, experiments
        in ``GROUPS`` order and parts in ``PARTS`` order: ``experiment``, ``part`` (the
        column), ``label``, ``mass`` = Σ|part|, ``share`` = mass / the group's Σ mass (NaN
        when every part is 0), ``signed`` = Σ sign(diff)·part, ``signed_share`` = signed /
        Σ|diff| (NaN when Σ|diff| = 0), ``abs_diff`` = the group's Σ|diff|, ``cancelled`` =
        1 − Σ|diff| / Σ mass, and ``connections``.
    """
    _check(table)
    rows = []
    for name, group in _groups(table):
        if group.empty:
            continue
        diff = group["diff"].to_numpy(dtype=np.float64)
        sign = np.sign(diff)
        abs_diff = float(np.abs(diff).sum())
        parts = {p: group[p].to_numpy(dtype=np.float64) for p in PARTS}
        masses = {p: float(np.abs(v).sum()) for p, v in parts.items()}
        total = sum(masses.values())
        for part, label in PARTS.items():
            signed = float((sign * parts[part]).sum())
            rows.append(
                {
                    "experiment": name,
                    "part": part,
                    "label": label,
                    "mass": masses[part],
                    "share": masses[part] / total if total > 0 else np.nan,
                    "signed": signed,
                    "signed_share": signed / abs_diff if abs_diff > 0 else np.nan,
                    "abs_diff": abs_diff,
                    "cancelled": 1.0 - abs_diff / total if total > 0 else np.nan,
                    "connections": len(group),
                }
            )
    columns = ["experiment", "part", "label", "mass", "share", "signed", "signed_share"]
    return pd.DataFrame(rows, columns=[*columns, "abs_diff", "cancelled", "connections"])


def exit_rates(table: pd.DataFrame) -> pd.DataFrame:
    """How often each experiment's output feature left the top k.

    Returns:
        Indexed by experiment (``GROUPS`` order, empty ones included): ``connections``,
        ``exits`` (how many exited), ``p_exit`` = exits / connections (NaN when empty) and
        ``exit_mass_share`` = Σ|diff| of the exited connections / the group's Σ|diff| (NaN
        when Σ|diff| = 0).
    """
    _check(table)
    out = {
        name: {
            "connections": len(group),
            "exits": int(group["exited"].to_numpy(dtype=bool).sum()),
            "p_exit": p_exit(group),
            "exit_mass_share": exit_mass_share(group),
        }
        for name, group in _groups(table)
    }
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.index.name = "experiment"
    return frame
