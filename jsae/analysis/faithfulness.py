"""What the joint ablation says: the sets removed together, the faithfulness curves, the score.

From ``JointCurves`` (``jsae.analysis.joint``), at a split ε:

* **sets removed together**, per (token, output feature j): j's unimportant inputs
  (|J| <= ε), its important inputs, and a random set of as many inputs as the unimportant one.
  For each: mean |diff|, mean share of j's activation moved (|diff| / out_act, over j with
  out_act > 0), how often j left the top k, the mean |first-order prediction| and the
  *additivity gap*, mean |diff(S) - sum_{i in S} diff({i})|: how far the joint effect is
  from what the one-at-a-time test adds up to. A (token, j) whose set is empty is left out
  of that set's means (``pairs`` counts the rest).
* **faithfulness curves**: for each order, the mean |diff| (and share, exit rate) with the
  first m inputs removed, against m / k_in; and the threshold-free score

      score = (A_random - A_jacobian) / (A_random - A_oracle),

  A the area under an order's mean-|diff| curve (trapezoids over m / k_in): 1 when removing
  the smallest |J| first is as harmless as removing the smallest single-connection effects
  first, 0 when it is no better than random, negative when worse. Its interval resamples
  tokens (``jsae.analysis.bootstrap``).

Everything but the interval is a sum over (token, j), kept in ``JointSums`` as exact
integers (``jsae.exact.exact_sum``) so that corpus shards merge bitwise-exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd
import torch

from jsae.analysis.bootstrap import percentile_interval, token_counts, token_resample
from jsae.analysis.effect import NAN_CI, SUMMARY_COLUMNS
from jsae.analysis.joint import ORDERS, JointCurves
from jsae.analysis.statistics import BOOTSTRAP_SEED, CONFIDENCE, N_BOOTSTRAP
from jsae.exact import exact_sum, exact_value
from jsae.table import check_eps, is_important

SETS = ("unimportant", "important", "random")
"""The sets removed together; each is a prefix of the order ``SET_ORDERS`` names."""
SET_ORDERS = {"unimportant": "jacobian", "important": "reverse", "random": "random"}
SET_SUMS = ("size", "abs_diff", "share", "abs_predicted", "abs_additive", "gap")
"""The exact sums kept per set (with the counts ``pairs``, ``share_pairs``, ``exits``)."""
CURVE_SUMS = ("abs_diff", "share")
SET_COLUMNS = (
    "set", "pairs", "mean_size", "mean_abs_diff", "mean_share", "exit_share",
    "mean_abs_predicted", "mean_abs_additive", "mean_additivity_gap",
)  # fmt: skip
"""Columns of ``JointStatistics.sets``: one row per set."""
CURVE_COLUMNS = ("order", "m", "fraction", "mean_abs_diff", "mean_share", "exit_share")
"""Columns of ``JointStatistics.curves``: one row per (order, m)."""


def set_sizes(curves: JointCurves, eps: float) -> dict[str, torch.Tensor]:
    """How many inputs each (token, j)'s sets hold at ``eps``: [tokens, k_out] per set."""
    important = is_important(curves.jacobian, check_eps(eps)).sum(-1)
    unimportant = curves.k_in - important
    return {"unimportant": unimportant, "important": important, "random": unimportant}


def _share(abs_diff: torch.Tensor, out_act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|diff| / out_act where out_act > 0 (0 elsewhere), and where it is defined."""
    defined = out_act > 0
    return torch.where(defined, abs_diff / out_act.where(defined, 1.0), 0.0), defined


def set_frame(curves: JointCurves, eps: float) -> pd.DataFrame:
    """One row per (token, j, set) with a non-empty set: position, out_feature, out_act, set,
    size, diff, predicted, additive, exited: the "removed together" rows a histogram draws."""
    sizes = set_sizes(curves, eps)
    diff, predicted, additive = curves.diff, curves.predicted, curves.additive
    frames = []
    for name in SETS:
        o, m = ORDERS.index(SET_ORDERS[name]), sizes[name][:, None, :, None]
        at = lambda v, o=o, m=m: v[:, o : o + 1].gather(-1, m)[:, 0, :, 0].reshape(-1)  # noqa: E731
        keep = (sizes[name] > 0).reshape(-1).numpy()
        frame = pd.DataFrame(
            {
                "position": curves.positions[:, None].expand_as(curves.out_idx).reshape(-1),
                "out_feature": curves.out_idx.reshape(-1),
                "out_act": curves.out_act.reshape(-1),
                "set": name,
                "size": sizes[name].reshape(-1),
                "diff": at(diff),
                "predicted": at(predicted),
                "additive": at(additive),
                "exited": at(curves.exited),
            }
        )
        frames.append(frame[keep])
    return pd.concat(frames, ignore_index=True)


@dataclass
class JointSums:
    """The mergeable part of the joint statistics: exact integer sums and counts.

    ``curve[name]`` is an [orders, k_in + 1] array of exact sums over (token, j);
    ``curve_exits`` and ``curve_share_pairs`` counts of the same shape; ``sets[set]`` the
    set's exact sums (``SET_SUMS``) and counts (``pairs``, ``share_pairs``, ``exits``)."""

    eps: float
    k_in: int
    k_out: int
    n_tokens: int
    curve: dict[str, list[list[int]]]
    curve_exits: list[list[int]]
    curve_share_pairs: list[list[int]]
    sets: dict[str, dict[str, int]]

    @classmethod
    def of(cls, curves: JointCurves, eps: float) -> JointSums:
        abs_diff = curves.diff.abs().double()
        share, defined = _share(abs_diff, curves.out_act.double()[:, None, :, None])
        m_axis = (curves.n_tokens * curves.k_out, len(ORDERS), curves.k_in + 1)

        def per_m(values: torch.Tensor) -> list[list[int]]:
            flat = values.permute(0, 2, 1, 3).reshape(m_axis).numpy()
            return [[exact_sum(flat[:, o, m]) for m in range(m_axis[2])] for o in range(m_axis[1])]

        def counts(flags: torch.Tensor) -> list[list[int]]:
            return flags.expand_as(abs_diff).sum((0, 2)).tolist()

        sets = {}
        frame = set_frame(curves, eps)
        for name in SETS:
            rows = frame[frame["set"] == name]
            d = rows["diff"].to_numpy(np.float64)
            act = rows["out_act"].to_numpy(np.float64)
            defined_rows = act > 0
            values = {
                "size": rows["size"].to_numpy(np.float64),
                "abs_diff": np.abs(d),
                "share": np.abs(d[defined_rows]) / act[defined_rows],
                "abs_predicted": np.abs(rows["predicted"].to_numpy(np.float64)),
                "abs_additive": np.abs(rows["additive"].to_numpy(np.float64)),
                "gap": np.abs(d - rows["additive"].to_numpy(np.float64)),
            }
            sets[name] = {key: exact_sum(v) for key, v in values.items()}
            sets[name].update(
                pairs=len(rows),
                share_pairs=int(defined_rows.sum()),
                exits=int(rows["exited"].sum()),
            )
        return cls(
            check_eps(eps),
            curves.k_in,
            curves.k_out,
            curves.n_tokens,
            {"abs_diff": per_m(abs_diff), "share": per_m(share)},
            counts(curves.exited),
            counts(defined),
            sets,
        )

    def merge(self, other: JointSums) -> JointSums:
        if (self.eps, self.k_in, self.k_out) != (other.eps, other.k_in, other.k_out):
            raise ValueError("Joint sums of different ε or k cannot be merged.")

        def add(a, b):  # nested lists of ints, added elementwise
            return [add(x, y) for x, y in zip(a, b, strict=True)] if isinstance(a, list) else a + b

        return JointSums(
            self.eps,
            self.k_in,
            self.k_out,
            self.n_tokens + other.n_tokens,
            {k: add(self.curve[k], other.curve[k]) for k in CURVE_SUMS},
            add(self.curve_exits, other.curve_exits),
            add(self.curve_share_pairs, other.curve_share_pairs),
            {s: {k: v + other.sets[s][k] for k, v in self.sets[s].items()} for s in SETS},
        )

    def to_dict(self) -> dict:
        """JSON-ready (exact sums as Python integers, which JSON keeps exactly)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> JointSums:
        if set(data) != {f.name for f in fields(cls)}:
            raise ValueError(f"not a JointSums record: keys {sorted(data)}")
        return cls(**data)

    def curve_frame(self) -> pd.DataFrame:
        """``CURVE_COLUMNS``: each order's means against m."""
        pairs = self.n_tokens * self.k_out
        rows = []
        for o, order in enumerate(ORDERS):
            for m in range(self.k_in + 1):
                share_n = self.curve_share_pairs[o][m]
                rows.append(
                    (
                        order,
                        m,
                        m / self.k_in,
                        _mean(self.curve["abs_diff"][o][m], pairs),
                        _mean(self.curve["share"][o][m], share_n),
                        self.curve_exits[o][m] / pairs if pairs else math.nan,
                    )
                )
        return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))

    def set_table(self) -> pd.DataFrame:
        """``SET_COLUMNS``: each set's means."""
        rows = []
        for name in SETS:
            s = self.sets[name]
            n = s["pairs"]
            rows.append(
                (name, n, _mean(s["size"], n), _mean(s["abs_diff"], n),
                 _mean(s["share"], s["share_pairs"]), s["exits"] / n if n else math.nan,
                 _mean(s["abs_predicted"], n), _mean(s["abs_additive"], n), _mean(s["gap"], n))
            )  # fmt: skip
        return pd.DataFrame(rows, columns=list(SET_COLUMNS))

    def statistics(self) -> JointStatistics:
        """The statistics these sums give, without an interval (NaN): the corpus's merge."""
        curves = self.curve_frame()
        return JointStatistics(
            self.eps, self.k_in, self.k_out, self.n_tokens, 0, self.set_table(), curves,
            areas(curves), NAN_CI,
        )  # fmt: skip


def _mean(total: int, count: int) -> float:
    return exact_value(total, count) if count else math.nan


def areas(curves: pd.DataFrame) -> dict[str, float]:
    """The area under each order's mean-|diff| curve, trapezoids over m / k_in."""
    return {
        order: float(np.trapezoid(part["mean_abs_diff"], part["fraction"]))
        for order, part in curves.groupby("order", sort=False)
    }


def faithfulness_score(area: dict[str, float]) -> float:
    """(A_random - A_jacobian) / (A_random - A_oracle); NaN when random equals the oracle."""
    gain = area["random"] - area["oracle"]
    return (area["random"] - area["jacobian"]) / gain if gain != 0 else math.nan


@dataclass(frozen=True)
class JointStatistics:
    """The joint ablation's numbers at one ε (see the module docstring).

    Args:
        eps, k_in, k_out, n_tokens: the split and the shapes behind the numbers.
        n_bootstrap: token resamples behind ``score_ci`` (0: none, NaN interval).
        sets: ``SET_COLUMNS``, one row per set; curves: ``CURVE_COLUMNS``.
        area: each order's area under its mean-|diff| curve.
        score_ci: the faithfulness score's percentile interval.
    """

    eps: float
    k_in: int
    k_out: int
    n_tokens: int
    n_bootstrap: int
    sets: pd.DataFrame = field(compare=False)
    curves: pd.DataFrame = field(compare=False)
    area: dict[str, float] = field(compare=False)
    score_ci: tuple[float, float]

    @property
    def score(self) -> float:
        return faithfulness_score(self.area)

    def of_set(self, name: str) -> pd.Series:
        return self.sets.set_index("set").loc[name]

    def summary(self) -> pd.DataFrame:
        """``jsae.analysis.effect.SUMMARY_COLUMNS`` rows: each set's numbers and the score."""
        eps = f"{self.eps:g}"
        what = {
            "unimportant": f"all of j's inputs with |J| <= ε = {eps}",
            "important": f"all of j's inputs with |J| > ε = {eps}",
            "random": "a random set of j's inputs, as many as its unimportant ones",
        }
        rows = []
        for name in SETS:
            s = self.of_set(name)
            lead = f"Removing {what[name]} together"
            rows += [
                (f"joint_{name}_abs_diff", s["mean_abs_diff"], NAN_CI,
                 f"{lead}: mean |diff| of output feature j."),
                (f"joint_{name}_share", s["mean_share"], NAN_CI,
                 f"{lead}: mean share of j's activation moved (|diff| / out_act)."),
                (f"joint_{name}_exit_share", s["exit_share"], NAN_CI,
                 f"{lead}: share of (token, j) where j left the top k."),
                (f"joint_{name}_additivity_gap", s["mean_additivity_gap"], NAN_CI,
                 f"{lead}: mean |joint diff − sum of the single-connection diffs|."),
            ]  # fmt: skip
        rows.append(
            ("faithfulness_score", self.score, self.score_ci,
             "Removing inputs by |J| ascending, against random (0) and the single-connection "
             "oracle (1): area under the mean-|diff| curve; negative is worse than random.")
        )  # fmt: skip
        return pd.DataFrame(
            [(name, value, *ci, text) for name, value, ci, text in rows],
            columns=list(SUMMARY_COLUMNS),
        )


def joint_statistics(
    curves: JointCurves,
    eps: float,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> JointStatistics:
    """The sums' statistics, with the score's interval from ``n_bootstrap`` token resamples."""
    stats = JointSums.of(curves, eps).statistics()
    if n_bootstrap == 0 or curves.n_tokens == 0:
        return stats
    # Per token, the sum over j of |diff| at every (order, m); a replicate weights tokens
    per_token = curves.diff.abs().double().sum(2).reshape(curves.n_tokens, -1).numpy()
    counts = token_counts(token_resample(curves.n_tokens, n_bootstrap, seed), curves.n_tokens)
    means = (counts @ per_token) / (counts.sum(1, keepdims=True) * curves.k_out)
    x = np.arange(curves.k_in + 1) / curves.k_in
    area = np.trapezoid(means.reshape(n_bootstrap, len(ORDERS), -1), x, axis=-1)
    by = {order: area[:, o] for o, order in enumerate(ORDERS)}
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = (by["random"] - by["jacobian"]) / (by["random"] - by["oracle"])
    scores[~np.isfinite(scores)] = np.nan
    return JointStatistics(
        stats.eps, stats.k_in, stats.k_out, stats.n_tokens, n_bootstrap, stats.sets,
        stats.curves, stats.area, percentile_interval(scores, confidence),
    )  # fmt: skip
