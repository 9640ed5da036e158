"""The connections against known true edges, on a table small enough to count by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from jsae.analysis import RECOVERY_COLUMNS, edge_flags, edge_recovery
from jsae.errors import InputError

EDGES = pd.DataFrame({"in_feature": [0, 2, 5], "out_feature": [1, 3, 5]})
#   in out   J      diff  exited pre_diff   edge  |J|>ε   |diff|>τ
ROWS = [
    (0, 1, 0.5, -0.4, False, -0.4),  # edge  yes    yes
    (0, 2, 0.0, 0.0, False, 0.0),  # off   no     no
    (2, 3, 0.005, -0.05, False, -0.05),  # edge  no     no
    (1, 1, 0.02, -0.3, True, 0.001),  # off   yes    yes (an exit)
    (1, 3, 0.0, 0.2, False, 0.2),  # off   no     yes
    (2, 3, -0.8, -0.9, False, -0.9),  # edge  yes    yes (another token)
    (5, 5, 0.01, 0.1, False, 0.1),  # edge  no (=ε) no (=τ)
]


def table():
    cols = ["in_feature", "out_feature", "jacobian", "diff", "exited", "pre_diff"]
    t = pd.DataFrame(ROWS, columns=cols)
    return t.assign(position=np.arange(len(t)) % 3 + 1)


def test_precision_and_recall_counted_by_hand():
    found = edge_recovery(table(), EDGES, eps=0.01, tau=0.1)
    assert list(found.table.columns) == list(RECOVERY_COLUMNS)
    assert found.table["rule"].tolist() == ["important", "moved"]
    important, moved = found.row("important"), found.row("moved")
    # important: rows 0, 3, 5 flagged; true edges: rows 0, 2, 5, 6; hits: 0, 5
    assert important[["flagged", "true_edges", "hits"]].tolist() == [3, 4, 2]
    assert important["precision"] == pytest.approx(2 / 3)
    assert important["recall"] == pytest.approx(2 / 4)
    # moved: rows 0, 3, 4, 5 flagged; hits: 0, 5
    assert moved[["flagged", "true_edges", "hits"]].tolist() == [4, 4, 2]
    assert moved["precision"] == pytest.approx(2 / 4) and moved["recall"] == pytest.approx(2 / 4)
    # off the edges: rows 1, 3, 4; row 3 exited and carries 0.3 of 0.5
    assert (found.off_edge, found.off_edge_exits) == (3, 1)
    assert found.off_edge_exit_share == pytest.approx(0.3 / 0.5)
    assert found.off_edge_max_pre_diff == pytest.approx(0.2)
    said = found.sentences()
    assert said[0].startswith("Important (|J| > ε = 0.01) against the true edges: precision 66.7%")
    assert said[1].startswith("Moved (|diff| > τ = 0.1) against the true edges: precision 50.0%")
    assert "1 exited the top k, carrying 60.0%" in said[2]


def test_edge_flags_match_pairs_not_features():
    t = table()
    flags = edge_flags(t, EDGES)
    by_loop = [
        (i, j) in set(zip(EDGES.in_feature, EDGES.out_feature, strict=True))
        for i, j in zip(t.in_feature, t.out_feature, strict=True)
    ]
    assert flags.tolist() == by_loop == [True, False, True, False, False, True, True]
    with pytest.raises(InputError, match="in_feature and out_feature"):
        edge_flags(t, EDGES.rename(columns={"out_feature": "j"}))


def test_empty_sides_are_nan_not_errors():
    none = pd.DataFrame({"in_feature": [], "out_feature": []}, dtype=int)
    found = edge_recovery(table(), none, eps=10.0, tau=10.0)
    assert found.row("important")["flagged"] == 0
    assert math.isnan(found.row("important")["precision"])
    assert math.isnan(found.row("moved")["recall"])
    assert found.off_edge == len(ROWS)
    still = table().assign(diff=0.0)
    assert math.isnan(edge_recovery(still, EDGES, 0.01).off_edge_exit_share)
