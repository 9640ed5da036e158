"""The dose-response curve of one connection, and the classifier of its shape.

For one token with MLP input x and input feature i at activation a, the sweep sets i to a′
with the rest of the token fixed, x(a′) = x + (a′ − a) · W_dec_in[i], and reads output
feature j through the MLP and the output SAE with top-k re-selection. That is the ablation
engine's perturbation x − s · W_dec_in[i] at s = a − a′, and it runs through the engine's own
code (``Sandwich.perturbed_out_acts``), so the curve at a′ = a − 1 is the ``unit`` mode's
out_act + diff and at a′ = 0 the ``zero`` mode's. While j stays in the top k, the curve's
slope at a′ = a is the Jacobian J[j, i].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from jsae.errors import InputError
from jsae.sandwich import Sandwich


@dataclass
class DoseResponse:
    """The output feature's activation along a sweep of the input feature's activation.

    Args:
        curve: ``in_act`` (the swept a′), ``out_act`` (after top-k re-selection), ``pre``
            (the output feature's un-gated pre-activation, the line J is the slope of) and
            ``in_top_k`` (whether the output feature is among the k largest there).
        actual_in: the input feature's actual activation a on this token (0 if inactive).
        actual_out: the output feature's activation at a′ = a.
        jacobian: J[out_feature, in_feature] at the actual point (d out_pre / d a).
        in_feature, out_feature: the connection.
    """

    curve: pd.DataFrame
    actual_in: float
    actual_out: float
    jacobian: float
    in_feature: int
    out_feature: int


@torch.no_grad()
def dose_response(
    sandwich: Sandwich,
    x: Float[Tensor, " d_model"],
    in_feature: int,
    out_feature: int,
    points: int = 121,
    a_max: float | None = None,
    in_acts: Sequence[float] | None = None,
) -> DoseResponse:
    """Sweep input feature i's activation a′ from 0 to max(5, a + 1) (or over ``in_acts``)
    with the rest of the token fixed, x(a′) = x + (a′ − a) · W_dec_in[i], and read output
    feature j after the MLP and the output SAE's top-k re-selection (0 when j leaves the
    top k).

    Each a′ is the ablation engine's perturbation with step s = a − a′, computed by the
    engine's own code (``Sandwich.perturbed_out_acts``): a′ = a − 1 is the ``unit`` mode's
    point and a′ = 0 the ``zero`` mode's. The actual point a′ = a is always on the curve.
    """
    pair = sandwich.pair
    for name, feature, size in (
        ("input", in_feature, pair.d_sae_in),
        ("output", out_feature, pair.d_sae_out),
    ):
        if not 0 <= int(feature) < size:
            raise InputError(f"The {name} feature must be in 0..{size - 1}, got {feature}.")
    if in_acts is None and points < 2:
        raise InputError("The sweep needs at least 2 points.")
    in_feature, out_feature = int(in_feature), int(out_feature)
    base = sandwich(x.to(sandwich.mlp.W_in.dtype)[None])
    in_idx = base.in_idx[0].tolist()
    out_idx = base.out_idx[0].tolist()
    a = float(base.in_act[0, in_idx.index(in_feature)]) if in_feature in in_idx else 0.0
    if in_acts is None:
        top = max(5.0, a + 1.0) if a_max is None else float(a_max)
        in_acts = np.linspace(0.0, top, points)
    grid = np.unique(np.append(np.asarray(in_acts, dtype=np.float64), a))
    device = base.pre.device
    after = sandwich.perturbed_out_acts(
        base.pre,
        torch.full((1, len(grid)), in_feature, device=device),
        torch.tensor(a - grid, dtype=base.pre.dtype, device=device)[None],
        torch.tensor([[out_feature]], device=device),
    )
    curve = pd.DataFrame(
        {
            "in_act": grid,
            "out_act": after.acts[0, :, 0].double().cpu().numpy(),
            "pre": after.pre[0, :, 0].double().cpu().numpy(),
            "in_top_k": ~after.exited[0, :, 0].cpu().numpy(),
        }
    )
    actual_out = float(curve.loc[np.argmin(np.abs(grid - a)), "out_act"])
    if in_feature in in_idx and out_feature in out_idx:
        jac = float(base.jacobian[0, out_idx.index(out_feature), in_idx.index(in_feature)])
    else:
        jac = math.nan
    return DoseResponse(curve, a, actual_out, jac, in_feature, out_feature)


@dataclass(frozen=True)
class CurveShape:
    """How a dose-response curve looks.

    Args:
        label: ``"linear"``, ``"jumprelu"`` (zero on one side of a threshold, linear on the
            other) or ``"other"``.
        description: a sentence for the page.
        slope: the slope of the linear part (NaN for ``"other"``).
        threshold: where a JumpReLU-like curve switches (NaN otherwise).
        jump: the linear part's value at the threshold (0 for a plain ReLU kink).
        r2: R² of the linear fit that decided.
    """

    label: str
    description: str
    slope: float = math.nan
    threshold: float = math.nan
    jump: float = math.nan
    r2: float = math.nan


CURVE_LABELS = {"linear": "linear", "jumprelu": "JumpReLU-like", "other": "other"}


def _linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares slope, intercept and R² (1 when y is fit exactly)."""
    if len(x) < 2 or np.ptp(x) == 0:
        return 0.0, float(np.mean(y)) if len(y) else 0.0, math.nan
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    ss_res = float(resid @ resid)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    scale = max(float(np.abs(y).max()), 1e-12)
    if ss_res <= (1e-9 * scale) ** 2 * len(y):
        r2 = 1.0
    elif ss_tot == 0:
        r2 = 0.0
    else:
        r2 = 1.0 - ss_res / ss_tot
    return float(slope), float(intercept), float(r2)


def classify_curve(
    a: np.ndarray,
    y: np.ndarray,
    r2_min: float = 0.99,
    zero_tol: float | None = None,
    min_points: int = 3,
) -> CurveShape:
    """Classify a dose-response curve y(a) as linear, JumpReLU-like or other.

    * linear: one straight line fits all points (R² ≥ ``r2_min``), a flat line included;
    * JumpReLU-like: y is zero on [0, t) and a straight line from t on (a ReLU or top-k
      gate switching on, with or without a jump), or the mirror image (linear, then zero
      from t on: the gate switching off);
    * other: anything else (curved, bumpy, several switches).

    ``zero_tol`` defaults to 1e-6 + 1e-3 · max|y|.
    """
    a = np.asarray(a, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if a.shape != y.shape or a.ndim != 1 or len(a) < 2:
        raise InputError("A curve needs matching 1-D arrays of at least 2 points.")
    order = np.argsort(a, kind="stable")
    a, y = a[order], y[order]
    peak = float(np.abs(y).max())
    tol = (1e-6 + 1e-3 * peak) if zero_tol is None else zero_tol
    zero = np.abs(y) <= tol
    if zero.all():
        return CurveShape("linear", "Flat at zero over the whole sweep.", 0.0, r2=1.0)

    nonzero = np.flatnonzero(~zero)
    first, last = int(nonzero[0]), int(nonzero[-1])
    # Zero below a threshold, then linear.
    if first >= 2 and len(a) - first >= min_points and not zero[first:].any():
        slope, intercept, r2 = _linear_fit(a[first:], y[first:])
        if r2 >= r2_min:
            t = 0.5 * (a[first - 1] + a[first])
            jump = slope * t + intercept
            return CurveShape(
                "jumprelu",
                f"Zero below a′ ≈ {t:.3g}, then linear (slope {slope:.3g}"
                + (f", jump {jump:.3g} at the threshold)." if abs(jump) > 10 * tol else ")."),
                slope,
                t,
                jump,
                r2,
            )
    # Linear, then zero from a threshold on.
    if len(a) - 1 - last >= 2 and last + 1 >= min_points and not zero[: last + 1].any():
        slope, intercept, r2 = _linear_fit(a[: last + 1], y[: last + 1])
        if r2 >= r2_min:
            t = 0.5 * (a[last] + a[last + 1])
            jump = slope * t + intercept
            return CurveShape(
                "jumprelu",
                f"Linear (slope {slope:.3g}), then zero above a′ ≈ {t:.3g}: the output "
                "feature switches off.",
                slope,
                t,
                jump,
                r2,
            )
    slope, intercept, r2 = _linear_fit(a, y)
    if r2 >= r2_min:
        return CurveShape("linear", f"Linear, slope {slope:.3g} (R² = {r2:.4f}).", slope, r2=r2)
    return CurveShape(
        "other",
        f"Neither linear nor zero-then-linear (a straight line explains R² = {r2:.2f}).",
        r2=r2,
    )
