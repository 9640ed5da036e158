"""The token explorer's view of the top k: how far each active output feature sits above
the best inactive one, and where a dose-response sweep takes the output feature out of
the top k.

**Margins** (``output_margins``). The output SAE keeps a token's k largest pre-activations;
the best inactive one, the (k+1)-th largest, is the *runner-up* r (one per token). The
table's ``margin`` of output feature j is out_pre_j − r, and ``out_act`` is ReLU(out_pre_j).
So from the table alone: r = out_act_j − margin_j for any j with out_act_j > 0 (all agree;
the median is taken), and out_pre_j = r + margin_j for every active j (= out_act_j when it
is positive). With no feature above 0 r is unknown (NaN); with no inactive feature at all
the margin is +∞ and r = −∞.

**Top-k steps** (``top_k_steps``). A dose-response curve's ``in_top_k`` says at each swept
a′ whether j is among the k largest. Between two neighbouring a′ where it changes, the
step is drawn at their midpoint and named as seen walking away from the actual activation
a: *leaves the top k* when the far side is out, *re-enters the top k* when it is back in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jsae.errors import InputError

LEAVES = "leaves the top k"
REENTERS = "re-enters the top k"

MARGIN_COLUMNS = (
    "out_feature",
    "out_act",
    "out_pre",
    "runner_up",
    "margin",
    "connections",
    "exits",
    "p_exit",
)


def output_margins(rows: pd.DataFrame) -> pd.DataFrame:
    """One token's active output features with their pre-activation, the runner-up and
    the margin between them, smallest margin (closest to displacement) first.

    Args:
        rows: one token's connections (``token_connections``), with ``out_act``,
            ``margin`` and ``exited``.

    Returns:
        ``MARGIN_COLUMNS``: per output feature its ``out_act``, ``out_pre``, the token's
        ``runner_up``, ``margin`` = out_pre − runner_up, and how many of its
        ``connections`` (one per active input feature) made it exit (``exits``,
        ``p_exit``).
    """
    missing = [
        c for c in ("position", "out_feature", "out_act", "margin", "exited") if c not in rows
    ]
    if missing:
        raise InputError(f"The connections lack {', '.join(missing)}; rerun the ablation.")
    if rows["position"].nunique() > 1:
        raise InputError("output_margins reads one token's connections (token_connections).")
    per = rows.groupby("out_feature", sort=False).agg(
        out_act=("out_act", "first"),
        margin=("margin", "first"),
        connections=("exited", "size"),
        exits=("exited", "sum"),
    )
    out_act = per["out_act"].to_numpy(dtype=np.float64)
    margin = per["margin"].to_numpy(dtype=np.float64)
    if np.isposinf(margin).all():
        runner_up = -np.inf
    else:
        positive = (out_act > 0) & np.isfinite(margin)
        runner_up = (
            float(np.median(out_act[positive] - margin[positive])) if positive.any() else np.nan
        )
    with np.errstate(invalid="ignore"):  # −∞ + ∞ where every feature is active: unused
        out_pre = np.where(out_act > 0, out_act, runner_up + margin)
    frame = per.reset_index().assign(
        out_pre=out_pre,
        runner_up=runner_up,
        exits=per["exits"].to_numpy(dtype=np.int64),
        p_exit=per["exits"].to_numpy(dtype=np.float64) / per["connections"].to_numpy(),
    )
    frame = frame.sort_values("margin", kind="stable").reset_index(drop=True)
    return frame[list(MARGIN_COLUMNS)]


def top_k_steps(curve: pd.DataFrame, actual_in: float) -> pd.DataFrame:
    """Where a dose-response curve's output feature changes top-k membership.

    Args:
        curve: ``DoseResponse.curve`` (``in_act`` ascending, ``in_top_k``).
        actual_in: the input feature's actual activation a.

    Returns:
        One row per change: ``in_act`` (midpoint of the two swept a′ around it),
        ``from_act``, ``to_act`` (those two a′) and ``event`` (``LEAVES`` or
        ``REENTERS``, walking away from a).
    """
    columns = ["in_act", "from_act", "to_act", "event"]
    if "in_top_k" not in curve or len(curve) < 2:
        return pd.DataFrame(columns=columns)
    x = curve["in_act"].to_numpy(dtype=np.float64)
    inside = curve["in_top_k"].to_numpy(dtype=bool)
    order = np.argsort(x, kind="stable")
    x, inside = x[order], inside[order]
    change = np.nonzero(inside[1:] != inside[:-1])[0]
    mid = (x[change] + x[change + 1]) / 2
    far = np.where(mid > actual_in, inside[change + 1], inside[change])
    return pd.DataFrame(
        {
            "in_act": mid,
            "from_act": x[change],
            "to_act": x[change + 1],
            "event": np.where(far, REENTERS, LEAVES),
        },
        columns=columns,
    )
