"""The cost model of certified pruning (``jsae.prune_policy``) against loops: the backoff's
skips, and the cheapest cut of light and heavy rows over every possible cut."""

import pytest
import torch

from jsae.prune_policy import GATHERED_COST, MAX_SKIP, WIN, Backoff, cost, light_cut, pays


def test_backoff_skips_one_two_four_blocks_until_a_try_pays():
    backoff, pattern = Backoff(), []
    for paid in [False] * 7 + [True, False]:
        skipped = 0
        while backoff.skip():
            skipped += 1
        pattern.append(skipped)
        backoff.record(paid)
    assert pattern == [0, 1, 2, 4, 8, 16, MAX_SKIP, MAX_SKIP, 0]


def test_light_cut_is_the_cheapest_of_every_cut():
    """Against a loop over every cut: light rows all compute the largest light count (at
    least ``least``), heavy rows the full scan; infinite counts are never light."""
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        counts = torch.randint(1, 600, (3, 7), generator=gen).float()
        counts[torch.rand(3, 7, generator=gen) < 0.2] = torch.inf
        cut, relative = light_cut(counts, 1024, least=16)
        best = (torch.inf, None)
        for c in counts.flatten().tolist():
            if c == torch.inf:
                continue
            light = counts <= c
            value = cost(max(16.0, c), 1024, float((~light).float().mean()))
            best = min(best, (value, c), key=lambda b: b[0])
        assert relative == pytest.approx(best[0]) and cut == best[1]
    assert light_cut(torch.full((2, 2), torch.inf), 1024, 16)[1] == torch.inf


def test_cost_and_pays_by_hand():
    """A block whose rows compute a quarter of d_sae gathered (twice a scan's cost per
    output), a fifth of them heavy, and a bound of a tenth: 0.5 + 0.2 + 0.1 of the full
    scan. ``pays`` wants strictly less than ``WIN``."""
    assert cost(256, 1024, 0.2, 0.1) == pytest.approx(GATHERED_COST / 4 + 0.2 + 0.1)
    assert pays(rows=10, columns=256, heavy=2, d_sae=1024, bound_cost=0.1) == (WIN > 0.8)
    at_win = (WIN - 0.5) * 1024 / GATHERED_COST  # columns whose cost is WIN with 2 of 4 heavy
    assert at_win == int(at_win)
    assert not pays(rows=4, columns=int(at_win), heavy=2, d_sae=1024)
    assert pays(rows=4, columns=int(at_win) - 1, heavy=2, d_sae=1024)
    assert not pays(rows=4, columns=0, heavy=2, d_sae=1024, bound_cost=WIN - 0.5)
