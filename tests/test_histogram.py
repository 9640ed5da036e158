"""One histogram rule: equal-width bins on a shared range, finite values only, for the
explorer's chart and the W&B table alike."""

import numpy as np
import pandas as pd
import pytest

from jsae import explore
from jsae.errors import InputError
from jsae.histogram import experiment_diffs, shared_counts
from jsae.wandb_log import histogram


def test_shared_counts_are_numpys_on_finite_values():
    rng = np.random.default_rng(0)
    groups = {"a": rng.normal(size=1000), "b": np.r_[rng.normal(0, 0.1, 300), np.nan, np.inf]}
    edges, counts = shared_counts(groups, (-2.0, 3.0), 25)
    np.testing.assert_allclose(edges, np.linspace(-2, 3, 26))
    assert list(counts) == ["a", "b"]
    for name, values in groups.items():
        finite = values[np.isfinite(values)]
        expected = [
            ((finite >= lo) & (finite < hi)).sum()
            for lo, hi in zip(edges[:-1], edges[1:], strict=True)
        ]
        expected[-1] += int((finite == edges[-1]).sum())  # the last bin is closed
        assert counts[name].tolist() == expected
        assert counts[name].dtype == np.int64
    assert counts["b"].sum() == 300  # nan and inf are not counted
    with pytest.raises(InputError):
        shared_counts(groups, (0.0, 1.0), 0)


def test_experiment_diffs_split_by_the_important_column():
    table = pd.DataFrame({"diff": [0.5, -1.0, 2.0, 0.0], "important": [True, False, True, False]})
    groups = experiment_diffs(table)
    assert list(groups) == ["important", "unimportant"]
    assert groups["important"].tolist() == [0.5, 2.0]
    assert groups["unimportant"].tolist() == [-1.0, 0.0]


def test_the_app_and_wandb_histograms_count_alike():
    rng = np.random.default_rng(1)
    diff = np.r_[rng.normal(0, 1, 400), rng.normal(0, 0.01, 1600), np.nan]
    table = pd.DataFrame({"diff": diff, "important": np.arange(len(diff)) < 400})
    logged = histogram(table, bins=30)
    assert list(logged.columns) == ["bin_left", "bin_right", "important", "unimportant"]
    assert len(logged) == 30  # every bin, empty ones included
    assert logged["bin_left"].iloc[0] == np.nanmin(diff)
    assert logged["bin_right"].iloc[-1] == np.nanmax(diff)
    value_range = (logged["bin_left"].iloc[0], logged["bin_right"].iloc[-1])
    drawn = explore.histogram_bins(experiment_diffs(table), bins=30, value_range=value_range)
    for name in ("important", "unimportant"):
        rows = drawn[drawn["experiment"] == name]
        nonzero = logged[logged[name] > 0]
        np.testing.assert_allclose(rows["bin_start"], nonzero["bin_left"])
        assert rows["count"].tolist() == nonzero[name].tolist()


def test_a_constant_wandb_histogram_is_one_unit_wide():
    table = pd.DataFrame({"diff": [0.25] * 4, "important": [True, False, False, False]})
    logged = histogram(table, bins=4)
    assert logged["bin_left"].iloc[0] == -0.25 and logged["bin_right"].iloc[-1] == 0.75
    assert logged["important"].sum() == 1 and logged["unimportant"].sum() == 3
