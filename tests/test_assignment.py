"""The Hungarian assignment used to match faces between frames, against exhaustive search."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mien.assignment import min_cost_assignment


def brute_force(cost: np.ndarray) -> float:
    n, m = cost.shape
    if n <= m:
        return min(cost[range(n), list(p)].sum() for p in itertools.permutations(range(m), n))
    return min(cost[list(p), range(m)].sum() for p in itertools.permutations(range(n), m))


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (2, 5), (5, 2), (4, 6), (6, 6), (7, 3)])
def test_least_total_cost_on_random_matrices(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        cost = rng.random(shape)
        if rng.random() < 0.3:
            cost = np.round(cost * 3)  # ties
        rows, cols = min_cost_assignment(cost)
        assert len(rows) == len(cols) == min(shape)
        assert len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
        assert np.all(np.diff(rows) > 0)
        assert cost[rows, cols].sum() == pytest.approx(brute_force(cost))


def test_maximising_iou_pairs_the_overlapping_boxes():
    iou = np.array([[0.1, 0.8, 0.0], [0.7, 0.75, 0.0]])  # greedy would give row 0 column 1 and row 1 column 0 too
    rows, cols = min_cost_assignment(-iou)
    assert list(zip(rows, cols)) == [(0, 1), (1, 0)]
    empty = min_cost_assignment(np.zeros((0, 4)))
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


def test_refuses_infinite_costs():
    with pytest.raises(ValueError, match="finite"):
        min_cost_assignment(np.array([[np.inf, 1.0]]))
