"""The bundle's quality targets, and its metrics as text (a summary and a markdown table)."""

from __future__ import annotations

from typing import Any

TARGET_EV_IN = 0.8
"""Every input SAE's explained variance on the held-out sample is at least this."""
TARGET_EV_OUT = 0.7
"""Every output SAE's explained variance on the held-out sample is at least this."""
TARGET_SPARSITY_RATIO = 0.25
"""A JSAE pair's fraction of |J| > ε is at most this times its layer's plain pair's."""


def check_targets(measured: dict[str, Any]) -> list[dict[str, Any]]:
    """The quality targets, each with the value reached and whether it was met."""
    targets = []
    pairs = measured["pairs"]
    for kind, by_layer in pairs.items():
        for layer, stats in by_layer.items():
            for side, threshold in (("in", TARGET_EV_IN), ("out", TARGET_EV_OUT)):
                value = stats[f"ev_{side}"]
                targets.append(
                    {
                        "name": f"ev_{side} >= {threshold}",
                        "kind": kind,
                        "layer": int(layer),
                        "value": value,
                        "met": value >= threshold,
                    }
                )
    for layer, stats in pairs.get("jsae", {}).items():
        plain = pairs.get("plain", {}).get(layer)
        if plain is None:
            continue
        ratio = stats["frac_abs_j_gt_eps"] / max(plain["frac_abs_j_gt_eps"], 1e-12)
        targets.append(
            {
                "name": f"jsae frac |J|>{measured['eps']} <= {TARGET_SPARSITY_RATIO} x plain",
                "kind": "jsae",
                "layer": int(layer),
                "value": ratio,
                "met": ratio <= TARGET_SPARSITY_RATIO,
            }
        )
    return targets


def targets_summary(targets: list[dict[str, Any]]) -> str:
    missed = [t for t in targets if not t["met"]]
    if not missed:
        return f"All {len(targets)} quality targets met."
    lines = [f"{len(missed)} of {len(targets)} quality targets missed:"]
    lines += [
        f"  {t['kind']} layer {t['layer']}: {t['name']} (got {t['value']:.4f})" for t in missed
    ]
    return "\n".join(lines)


def metrics_table(metrics: dict[str, Any]) -> str:
    """The per-pair metrics as a markdown table."""
    rows = [
        "| layer | kind | λ | EV in | EV out | dead in/out (train) | unfired in/out (held-out) "
        f"| frac abs J>{metrics['measured']['eps']:g} | mean abs J | mean abs diff important "
        "| mean abs diff unimportant |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    measured = metrics["measured"]["pairs"]
    for layer in sorted({int(k) for by in measured.values() for k in by}):
        for kind in ("jsae", "plain"):
            stats = measured.get(kind, {}).get(str(layer))
            if stats is None:
                continue
            train = metrics.get("training", {}).get(kind, {}).get(str(layer), {})
            abl = stats.get("ablation", {})
            rows.append(
                f"| {layer} | {kind} | {train.get('jacobian_coefficient', float('nan')):g} "
                f"| {stats['ev_in']:.3f} | {stats['ev_out']:.3f} "
                f"| {train.get('dead_in', float('nan')):.3f} / {train.get('dead_out', float('nan')):.3f} "
                f"| {stats['unfired_in']:.3f} / {stats['unfired_out']:.3f} "
                f"| {stats['frac_abs_j_gt_eps']:.4f} | {stats['mean_abs_j']:.5f} "
                f"| {_fmt(abl.get('important_mean_abs_diff'))} "
                f"| {_fmt(abl.get('unimportant_mean_abs_diff'))} |"
            )
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.5f}"
