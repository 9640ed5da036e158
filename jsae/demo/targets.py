"""The bundle's quality targets, and its metrics as text (a summary and a markdown table)."""

from __future__ import annotations

from typing import Any

from jsae.analysis.health import FLAT_CV, UNFIRED_OUT

TARGET_EV_IN = 0.8
"""Every input SAE's explained variance on the held-out sample is at least this."""
TARGET_EV_OUT = 0.7
"""Every output SAE's explained variance on the held-out sample is at least this."""
TARGET_SPARSITY_RATIO = 0.25
"""A JSAE pair's fraction of |J| > ε is at most this times its layer's plain pair's."""
TARGET_OUTPUT_CV = FLAT_CV
"""Every output code is not flat: the median within-token CV of its firing output activations
on the held-out sample is at least :data:`jsae.analysis.health.FLAT_CV` (pair health's flat
rule), so a degenerate near-binary code, on which perturbations mostly swap features out of
the top k, does not count as a good pair however sparse its Jacobian."""
TARGET_UNFIRED_OUT = UNFIRED_OUT
"""At most this share of every output SAE's features fire on none of the held-out tokens
(:data:`jsae.analysis.health.UNFIRED_OUT`; the sample has about 4,000 tokens, on which a
feature firing at the average rate k / d_sae fires about 60 times)."""


def check_targets(measured: dict[str, Any]) -> list[dict[str, Any]]:
    """The quality targets, each with the value reached and whether it was met."""
    targets = []
    pairs = measured["pairs"]
    for kind, by_layer in pairs.items():
        for layer, stats in by_layer.items():
            for key, threshold, at_least in (
                ("ev_in", TARGET_EV_IN, True),
                ("ev_out", TARGET_EV_OUT, True),
                ("output_cv", TARGET_OUTPUT_CV, True),
                ("unfired_out", TARGET_UNFIRED_OUT, False),
            ):
                value = stats[key]
                targets.append(
                    {
                        "name": f"{key} {'>=' if at_least else '<='} {threshold}",
                        "kind": kind,
                        "layer": int(layer),
                        "value": value,
                        "met": value >= threshold if at_least else value <= threshold,
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
        "| mean abs diff unimportant | output CV | binary EV out | margin median / q10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
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
                f"| {_fmt(abl.get('unimportant_mean_abs_diff'))} "
                f"| {_fmt(stats.get('output_cv'), 3)} | {_fmt(stats.get('binary_ev_out'), 3)} "
                f"| {_fmt(stats.get('margin_median'), 4)} / {_fmt(stats.get('margin_q10'), 4)} |"
            )
    return "\n".join(rows)


def diagnostics_table(metrics: dict[str, Any]) -> str:
    """Per pair, whether its sparse Jacobian locates the computation: the ratio with and
    without exits, the exits' share of the unimportant movement, AUC and Spearman of |J|
    against |diff|, on the line by count and by mass, the output code's CV and median margin,
    and the verdict (a markdown table)."""
    rows = [
        "| layer | kind | ratio | ratio without exits | exits' share of unimportant abs diff "
        "| AUC | Spearman | on the line: count / mass | output CV | margin median | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    measured = metrics["measured"]["pairs"]
    for layer in sorted({int(k) for by in measured.values() for k in by}):
        for kind in ("jsae", "plain"):
            stats = measured.get(kind, {}).get(str(layer))
            if stats is None or "causal" not in stats:
                continue
            c, v = stats["causal"], stats["verdict"]
            level = v["level"] + (" (perverse)" if v["perverse"] else "")
            rows.append(
                f"| {layer} | {kind} | {c['ratio']:.2f} | {c['ratio_without_exits']:.2f} "
                f"| {c['exit_share_unimportant']:.0%} | {c['auc']:.2f} | {c['spearman']:.2f} "
                f"| {c['on_line_count']:.0%} / {c['on_line_mass']:.0%} "
                f"| {stats['output_cv']:.3f} | {stats['margin_median']:.3f} | {level} |"
            )
    return "\n".join(rows)


def _fmt(value: float | None, digits: int = 5) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
