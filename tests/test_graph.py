"""The per-token connection graph against a plain loop over the token's connections, its
Altair chart through ``to_dict()``, and its circuit-tracer export against the fields of
circuit-tracer's frontend models (``circuit_tracer/frontend/graph_models.py``)."""

import json

import numpy as np
import pandas as pd
import pytest

from jsae import charts, explore
from jsae.ablation import ablate
from jsae.analysis.graph import connection_graph
from jsae.analysis.graph_export import circuit_tracer_json, half_layer
from jsae.errors import InputError
from tests.helpers import TEXT, tiny_model, tiny_pair

EPS = 0.05

# circuit-tracer's pydantic models, their fields without defaults (required) and with
CT_NODE_REQUIRED = {"node_id", "feature", "layer", "ctx_idx", "feature_type", "jsNodeId"}
CT_NODE_OPTIONAL = {"token_prob", "is_target_logit", "run_idx", "reverse_ctx_idx", "clerp"}
CT_NODE_OPTIONAL |= {"influence", "activation"}
CT_METADATA_REQUIRED = {"slug", "scan", "transcoder_list", "prompt_tokens", "prompt"}
CT_QPARAMS = {"pinnedIds", "supernodes", "linkType", "clickedId", "sg_pos"}


@pytest.fixture(scope="module")
def run():
    model = tiny_model()
    pair = tiny_pair(model, 1, d_sae=32, k=5)
    result = ablate(model, pair, TEXT[:60], eps=EPS)
    return result.table, result


@pytest.fixture(scope="module")
def rows(run):
    table, _ = run
    return explore.token_connections(table, int(table["position"].iloc[0]))


def loop_edges(rows: pd.DataFrame, eps: float, threshold: float) -> dict:
    edges = {}
    for r in rows.itertuples():
        if abs(r.jacobian) > eps and abs(r.jacobian) >= threshold:
            edges[(r.in_feature, r.out_feature)] = (r.jacobian, r.diff, r.exited)
    return edges


@pytest.mark.parametrize("threshold", [0.0, 0.2])
def test_graph_edges_and_counts_match_a_loop(rows, threshold):
    graph = connection_graph(rows, EPS, threshold, labels=lambda s, f: f"{s}#{f}")
    want = loop_edges(rows, EPS, threshold)
    got = {
        (e.in_feature, e.out_feature): (e.jacobian, e.diff, e.exited)
        for e in graph.edges.itertuples()
    }
    assert got == want and graph.shown == len(want)
    assert graph.total == 25
    assert graph.important == sum(abs(j) > EPS for j in rows["jacobian"])
    assert list(graph.edges["abs_jacobian"]) == sorted(graph.edges["abs_jacobian"], reverse=True)
    ins = {i for i, _ in want}
    outs = {o for _, o in want}
    assert set(graph.nodes.loc[graph.nodes.side == "in", "feature"]) == ins
    assert set(graph.nodes.loc[graph.nodes.side == "out", "feature"]) == outs
    for side in ("in", "out"):
        side_nodes = graph.nodes[graph.nodes.side == side]
        acts = side_nodes.sort_values("row")["activation"].tolist()
        assert acts == sorted(acts, reverse=True)
        assert (side_nodes["label"] == [f"{side}#{f}" for f in side_nodes["feature"]]).all()
    seg = graph.segments()
    rank = dict(zip(graph.nodes.node_id, graph.nodes.row, strict=True))
    assert (seg["in_row"] == seg["source"].map(rank)).all()
    assert f"{graph.shown} edges shown" in graph.summary()
    assert f"of {graph.important} important" in graph.summary()


def test_graph_refuses_bad_input(rows, run):
    with pytest.raises(InputError, match="threshold"):
        connection_graph(rows, EPS, -1.0)
    with pytest.raises(InputError, match="one token"):
        connection_graph(run[0], EPS)


def test_graph_chart(rows):
    graph = connection_graph(rows, EPS)
    first = graph.edges.iloc[0]
    selected = (int(first.in_feature), int(first.out_feature))
    spec = charts.connection_graph_chart(graph.segments(), graph.nodes, selected=selected).to_dict()
    rules = spec["layer"][0]
    assert rules["mark"]["type"] == "rule"
    enc = rules["encoding"]
    assert enc["strokeWidth"]["field"] == "abs_jacobian"
    assert enc["color"]["condition"]["value"] == charts.HIGHLIGHT
    assert enc["color"]["field"] == "diff" and enc["strokeDash"]["field"] == "exit"
    assert spec["params"][0]["name"] == charts.EDGE_SELECTION or any(
        p.get("name") == charts.EDGE_SELECTION for p in rules.get("params", [])
    )
    data = spec["datasets"][rules["data"]["name"]]
    assert len(data) == graph.shown
    assert [d["picked"] for d in data].count(True) == 1
    labels = [layer for layer in spec["layer"] if layer["mark"]["type"] == "text"]
    assert len(labels) == 2


def test_card_histogram_chart():
    hist = pd.DataFrame({"left": [0.1, 1.0, 10.0], "right": [1.0, 10.0, 100.0], "count": [2, 0, 5]})
    spec = charts.card_histogram(hist).to_dict()
    data = spec["datasets"][spec["data"]["name"]]
    assert [d["count"] for d in data] == [2, 5]
    assert spec["encoding"]["x"]["scale"]["type"] == "log"


def test_circuit_tracer_export_shape(rows, run):
    _, result = run
    graph = connection_graph(rows, EPS, labels=lambda s, f: f"{s}{f}")
    strings = result.prompt.strings
    out = circuit_tracer_json(graph, layer=1, kind="jsae", source="tiny", prompt_tokens=strings)
    json.loads(json.dumps(out, allow_nan=False))
    assert set(out) == {"metadata", "qParams", "nodes", "links"}
    assert set(out["metadata"]) >= CT_METADATA_REQUIRED and set(out["qParams"]) == CT_QPARAMS
    ids = [n["node_id"] for n in out["nodes"]]
    assert len(ids) == len(set(ids)) == len(graph.nodes)
    for node in out["nodes"]:
        assert set(node) >= CT_NODE_REQUIRED | CT_NODE_OPTIONAL
        assert isinstance(node["layer"], str) and isinstance(node["feature"], int)
        assert node["layer"] == str(half_layer(1, node["jsae_side"]))
        assert node["ctx_idx"] == graph.position
    assert {n["layer"] for n in out["nodes"]} == {"2", "3"}
    assert out["metadata"]["prompt_tokens"] == strings
    assert len(out["links"]) == graph.shown
    by_id = {n["node_id"]: n for n in out["nodes"]}
    for link, edge in zip(out["links"], graph.edges.itertuples(), strict=True):
        assert (
            by_id[link["source"]]["jsae_side"] == "in"
            and by_id[link["target"]]["jsae_side"] == "out"
        )
        assert by_id[link["source"]]["feature"] == edge.in_feature
        assert link["weight"] == pytest.approx(edge.jacobian)
    assert np.isclose(out["metadata"]["jsae"]["eps"], EPS)
