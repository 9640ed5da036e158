"""The planted ground truth: the model computes the planted graph (checked through the model's
own hooks against numpy), and the tool's numbers on its pairs are the ones the construction
predicts: on ``true`` the engine's J is σ′·w on the true edges and exactly 0 off them, every
off-edge diff is a top-k exit caused by a competing output feature, and the verdict says the
sparsity is sound; on ``rotated`` the Jacobian is dense and the verdict says so."""

import numpy as np
import pandas as pd
import pytest
import torch

from jsae.ablation import AblationConfig, ablate
from jsae.analysis import DENSE_FRACTION, analyse, edge_flags
from jsae.errors import InputError
from jsae.loading import BUILTIN_SOURCES, PLANTED_SOURCE, load_source
from jsae.pair import topk_encode
from jsae.planted import (
    LAYER,
    NOISY_COSINE,
    PLANTED_KINDS,
    PlantedSettings,
    match_features,
    planted_graph,
    planted_model,
)
from jsae.prompt import mlp_activations

TEXT = "The quick brown fox jumps over the lazy dog; 3 + 4 = 7. Ünïcödé, too!"


@pytest.fixture(scope="module")
def source():
    return load_source(PLANTED_SOURCE)


@pytest.fixture(scope="module")
def graph(source):
    return source.ground_truth.graph


def ids_of(source, text=TEXT):
    return source.model.to_tokens(text)[0]


def test_the_graph_is_what_its_settings_say():
    graph = planted_graph()
    s = graph.settings
    assert graph.inputs.shape == (s.n_in, s.d_model) and graph.outputs.shape == (s.n_out, s.d_model)
    np.testing.assert_array_equal(graph.inputs @ graph.inputs.T, np.eye(s.n_in))
    np.testing.assert_array_equal(graph.outputs @ graph.outputs.T, np.eye(s.n_out))
    assert np.all(graph.inputs.sum(-1) == 0), "input directions are orthogonal to all-ones"
    assert ((graph.weights != 0).sum(0) == s.parents).all()
    assert np.all(graph.weights * 8 == np.round(graph.weights * 8)), "multiples of 1/8"
    assert ((graph.coefficients != 0).sum(-1) == s.k_in).all()
    for row in graph.coefficients:  # every token: the same k_in values, in some order
        np.testing.assert_array_equal(np.sort(row[row != 0]), s.coefficients)
    pre = graph.coefficients @ graph.weights + graph.bias
    assert ((pre > 0).sum(-1) == s.k_out).all() and np.abs(pre).min() >= s.margin
    assert len(graph.edges) == s.n_out * s.parents


def test_the_graph_is_its_seeds():
    a, b = planted_graph(), planted_graph(PlantedSettings(seed=0))
    for name in ("inputs", "outputs", "weights", "bias", "coefficients"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.weights, planted_graph(PlantedSettings(seed=1)).weights)
    with pytest.raises(InputError, match="power of two"):
        PlantedSettings(d_model=48)
    with pytest.raises(InputError, match="k_out"):
        planted_graph(PlantedSettings(k_out=1, margin=1.0))


def test_the_model_computes_the_graph_by_its_own_hooks(source, graph):
    """The MLP's own pre-activations and output (TransformerLens's hooks) are the planted
    Σ w·a + b and Σ h·g, and what ``mlp_activations`` reads (what blocks.0.mlp receives,
    after ln2's gain and bias) is the planted x_t = Σ a·d."""
    ids = ids_of(source)
    _, cache = source.model.run_with_cache(ids[None])
    a = graph.coefficients[ids.numpy()]
    pre = a @ graph.weights + graph.bias
    got_pre = cache[f"blocks.{LAYER}.mlp.hook_pre"][0].double().numpy(force=True)
    np.testing.assert_allclose(got_pre, pre, atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        cache[f"blocks.{LAYER}.hook_mlp_out"][0].double().numpy(force=True),
        np.maximum(pre, 0) @ graph.outputs,
        atol=1e-6,
        rtol=0,
    )
    assert torch.all(cache[f"blocks.{LAYER}.hook_attn_out"] == 0), "attention writes nothing"
    x, y = mlp_activations(source.model, ids[None], [LAYER])[LAYER]
    np.testing.assert_allclose(x[0].double().numpy(force=True), a @ graph.inputs, atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        x[0].double().numpy(force=True) @ graph.inputs.T, a, atol=1e-6, rtol=0
    )
    torch.testing.assert_close(y, cache[f"blocks.{LAYER}.hook_mlp_out"], atol=0, rtol=0)
    # the LayerNorm is a real one: a token of another norm is rescaled by it
    ln = source.model.blocks[LAYER].ln2
    doubled = ln(torch.as_tensor(2 * a[:1] @ graph.inputs, dtype=torch.float32))
    assert not torch.allclose(doubled, torch.as_tensor(2 * a[:1] @ graph.inputs).float())


def test_the_source_is_built_not_shipped(source):
    again = load_source(PLANTED_SOURCE)
    for (name, p), q in zip(
        source.model.state_dict().items(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name
    assert source.kinds == list(PLANTED_KINDS.order) == ["true", "rotated", "noisy", "small_k"]
    assert source.pair_kinds is PLANTED_KINDS and source.default_kind == "true"
    assert source.info["planted"]["true edges"] == len(source.ground_truth.graph.edges)
    assert BUILTIN_SOURCES[PLANTED_SOURCE].label == "Planted ground truth"
    with pytest.raises(InputError, match="builds its own model"):
        load_source(PLANTED_SOURCE, model="gpt2")
    assert load_source("demo").true_edges(0, "jsae") is None


def test_the_pairs_are_the_planted_directions(source, graph):
    s = graph.settings
    x = torch.as_tensor(graph.embedding, dtype=torch.float32)
    true = source.pair(LAYER, "true")
    values, indices = topk_encode(true.sae_in, x)  # encodes each token's own coefficients
    dense = torch.zeros(len(x), s.n_in).scatter(-1, indices, values).double().numpy(force=True)
    np.testing.assert_array_equal(dense, graph.coefficients)
    assert (true.k_in, true.k_out) == (s.k_in, s.k_out)
    small = source.pair(LAYER, "small_k")
    assert (small.k_in, small.k_out) == (s.k_in // 2, s.k_out // 2)
    rotated = source.pair(LAYER, "rotated").sae_in.W_dec.double().numpy(force=True)
    np.testing.assert_allclose(rotated @ rotated.T, np.eye(s.n_in), atol=1e-6)
    project = lambda rows: rows.T @ np.linalg.pinv(rows.T)  # noqa: E731
    np.testing.assert_allclose(project(rotated), project(graph.inputs), atol=1e-5)
    assert match_features(rotated, graph.inputs).cosine.max() < 0.9, "no planted feature"
    noisy = source.pair(LAYER, "noisy")
    for sae, directions in ((noisy.sae_in, graph.inputs), (noisy.sae_out, graph.outputs)):
        cos = (sae.W_dec.double().numpy(force=True) * directions).sum(-1)
        np.testing.assert_allclose(cos, NOISY_COSINE, atol=1e-6)
    edges = source.true_edges(LAYER, "true")
    pd.testing.assert_frame_equal(
        edges[["in_feature", "out_feature", "weight"]], graph.edges, check_dtype=False
    )


def test_match_features_on_a_hand_checked_case():
    directions = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    decoder = np.array([[0, -2.0, 0], [3.0, 4.0, 0], [0.6, 0, 0.8]])
    found = match_features(decoder, directions)
    assert found.index.tolist() == [1, 1, 0]
    np.testing.assert_allclose(found.cosine, [1.0, 0.8, 0.6])


def test_true_pair_jacobian_is_the_planted_weights(source, graph):
    """J[j, i] = relu′(pre_j)·w_ij with pre_j the planted numpy pre-activation: w_ij on a
    true edge (every selected output is active, relu′ = 1) and exactly 0 off the edges."""
    result = ablate(source.model, source.pair(LAYER, "true"), TEXT)
    t = result.table
    a = graph.coefficients[ids_of(source).numpy()]
    pre = (a @ graph.weights + graph.bias)[t["position"], t["out_feature"]]
    expected = (pre > 0) * graph.weights[t["in_feature"], t["out_feature"]]
    assert (pre > 0).all(), "k_out = the active outputs: every selected one is active"
    np.testing.assert_array_equal(t["jacobian"].to_numpy(np.float64), expected)
    on = edge_flags(t, source.true_edges(LAYER, "true"))
    assert on.any() and (~on).any()
    assert (t["jacobian"].to_numpy()[~on] == 0).all()


@pytest.mark.parametrize("mode", ["unit", "zero"])
def test_true_pair_off_edge_movement_is_top_k_competition(source, graph, mode):
    """Off the true edges the continuous part of every diff is 0 (to 1e-6), so whatever moved
    there exited the top k; the feature that took its place is a child of the perturbed input
    through a negative weight (the perturbation raised it): competition. The decomposition,
    the ground-truth check and the verdict say so."""
    pair = source.pair(LAYER, "true")
    result = ablate(source.model, pair, TEXT * 3, config=AblationConfig(mode=mode))
    t = result.table
    edges = source.true_edges(LAYER, "true")
    off = ~edge_flags(t, edges)
    assert np.abs(t["pre_diff"].to_numpy()[off]).max() <= 1e-6
    moved = off & (np.abs(t["diff"].to_numpy()) > 1e-6)
    assert moved.sum() > 0, "the prompt must show some competition"
    assert t["exited"].to_numpy()[moved].all()
    exits = t[moved]
    raised = graph.weights[exits["in_feature"], exits["entered"]]
    assert (exits["entered"] >= 0).all() and (raised < 0).all()
    found = analyse(source.model, pair, result, n_bootstrap=0, true_edges=edges)
    assert found.statistics.exit_share_unimportant == 1.0
    assert found.statistics.ratio_without_exits == np.inf
    assert found.verdict.level == "yes" and not found.verdict.dense
    assert "sound" in found.verdict.sentence and "competition" in found.verdict.sentence
    recovery = found.edges
    assert recovery.row("important")[["precision", "recall"]].tolist() == [1.0, 1.0]
    assert recovery.off_edge_exit_share == 1.0 and recovery.off_edge_max_pre_diff <= 1e-6
    assert recovery.off_edge_exits == int((off & t["exited"].to_numpy()).sum())


def test_rotated_pair_shows_a_dense_jacobian(source):
    """The same computation in a rotated basis: most connections are important, the split
    barely separates movement, and the verdict leads with the dense Jacobian."""
    pair = source.pair(LAYER, "rotated")
    result = ablate(source.model, pair, TEXT)
    found = analyse(
        source.model, pair, result, n_bootstrap=0, true_edges=source.true_edges(LAYER, "rotated")
    )
    fraction = float(np.mean(np.abs(result.table["jacobian"].to_numpy()) > result.eps))
    assert found.statistics.fraction_important == pytest.approx(fraction)
    assert fraction >= DENSE_FRACTION
    assert found.verdict.dense and found.verdict.headline.startswith("Dense Jacobian.")
    assert any("The Jacobian is dense" in reason for reason in found.verdict.reasons)
    assert found.verdict.level != "yes"
    assert found.edges.row("important")["precision"] < 0.2
    assert found.edges.off_edge_max_pre_diff > 0.1, "off-edge connections move continuously"


def test_every_planted_model_builds_from_its_graph():
    graph = planted_graph(PlantedSettings(seed=3))
    model = planted_model(graph)
    ids = model.to_tokens("abc")[0]
    x, _ = mlp_activations(model, ids[None], [LAYER])[LAYER]
    np.testing.assert_allclose(
        x[0].double().numpy(force=True), graph.embedding[ids.numpy()], atol=1e-6
    )
