"""A connection graph as JSON in circuit-tracer's graph format (its frontend's ``Model``:
``metadata``, ``qParams``, ``nodes``, ``links``), read at safety-research/circuit-tracer
``circuit_tracer/frontend/graph_models.py``.

Where the formats differ: circuit-tracer's nodes sit on model layers; a JSAE pair's two SAEs
sit around one MLP, so the input SAE's features are put on layer ``2L`` and the output SAE's
on ``2L + 1`` (half-layers, so the frontend draws inputs below outputs). Both are typed
``"cross layer transcoder"``, the type the frontend draws as a feature, and the true side
is kept in ``jsae_side``. A node's ``feature`` is the feature id (circuit-tracer's is a
Cantor pairing of layer and id; ids here are unique per half-layer). A link's ``weight`` is
J (circuit-tracer's is an attribution); ``diff`` and ``exited`` ride along. No embedding,
error or logit nodes: the graph is one MLP's.
"""

from __future__ import annotations

import math
from typing import Any

from jsae.analysis.graph import ConnectionGraph

FEATURE_TYPE = "cross layer transcoder"
SCHEMA_VERSION = 1


def half_layer(layer: int, side: str) -> int:
    """Where a side's features sit: the input SAE on ``2L``, the output SAE on ``2L + 1``."""
    return 2 * layer + (side == "out")


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def circuit_tracer_json(
    graph: ConnectionGraph,
    *,
    layer: int,
    kind: str,
    source: str,
    prompt_tokens: list[str],
    slug: str | None = None,
) -> dict[str, Any]:
    """``graph`` as a circuit-tracer graph file's content (``json.dumps`` it)."""
    pos = graph.position
    nodes, ids = [], {}
    for row in graph.nodes.itertuples(index=False):
        at = half_layer(layer, row.side)
        ids[row.node_id] = f"{at}_{row.feature}_{pos}"
        nodes.append(
            {
                "node_id": ids[row.node_id],
                "feature": int(row.feature),
                "layer": str(at),
                "ctx_idx": pos,
                "feature_type": FEATURE_TYPE,
                "token_prob": 0.0,
                "is_target_logit": False,
                "run_idx": 0,
                "reverse_ctx_idx": 0,
                "jsNodeId": f"{at}_{row.feature}-0",
                "clerp": str(row.label),
                "influence": None,
                "activation": _number(row.activation),
                "jsae_side": row.side,
            }
        )
    links = [
        {
            "source": ids[edge.source],
            "target": ids[edge.target],
            "weight": float(edge.jacobian),
            "diff": _number(edge.diff),
            "exited": bool(edge.exited),
        }
        for edge in graph.edges.itertuples(index=False)
    ]
    slug = slug or f"jsae-{kind}-layer{layer}-pos{pos}"
    return {
        "metadata": {
            "slug": slug,
            "scan": f"{source}:{kind}:layer{layer}",
            "transcoder_list": [],
            "prompt_tokens": list(prompt_tokens),
            "prompt": "".join(prompt_tokens),
            "node_threshold": None,
            "schema_version": SCHEMA_VERSION,
            "jsae": {
                "layer": layer,
                "kind": kind,
                "position": pos,
                "eps": graph.eps,
                "threshold": graph.threshold,
                "connections": graph.total,
                "important": graph.important,
                "shown": graph.shown,
                "weight": "J[out, in] (the Jacobian), not an attribution",
            },
        },
        "qParams": {
            "pinnedIds": [],
            "supernodes": [],
            "linkType": "both",
            "clickedId": "",
            "sg_pos": "",
        },
        "nodes": nodes,
        "links": links,
    }
