"""Minimum-cost one-to-one assignment (the Hungarian method), for matching faces between frames and files.

The shortest-augmenting-path form with row and column potentials (Kuhn-Munkres as refined by Jonker and
Volgenant): O(n^2 m) for n rows and m >= n columns, vectorised over columns. Face counts per frame are small,
so this replaces a 140 MB dependency (scipy) for one function; `tests/test_assignment.py` checks it against
exhaustive search.
"""

from __future__ import annotations

import numpy as np


def min_cost_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the assignment of min(n, m) pairs with the least total cost (as
    `scipy.optimize.linear_sum_assignment` returns them: row indices ascending).

    Args:
        cost: (n, m) finite costs.
    """
    cost = np.asarray(cost, np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D matrix, got shape {cost.shape}")
    if not np.isfinite(cost).all():
        raise ValueError("cost must be finite (use a large number for pairs that must not match)")
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape
    if n == 0:
        empty = np.zeros(0, np.intp)
        return empty, empty
    row_potential = np.zeros(n + 1)
    column_potential = np.zeros(m + 1)
    owner = np.zeros(m + 1, np.intp)  # owner[j]: the 1-based row holding column j (0: free); column 0 is a sentinel
    previous = np.zeros(m + 1, np.intp)
    for row in range(1, n + 1):
        owner[0] = row
        column = 0
        slack = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, bool)
        while owner[column] != 0:  # grow the alternating tree until it reaches a free column
            used[column] = True
            current = owner[column]
            reduced = cost[current - 1] - row_potential[current] - column_potential[1:]
            free = ~used[1:]
            better = free & (reduced < slack[1:])
            slack[1:][better] = reduced[better]
            previous[1:][better] = column
            candidates = np.where(free, slack[1:], np.inf)
            nearest = int(np.argmin(candidates)) + 1
            delta = candidates[nearest - 1]
            row_potential[owner[used]] += delta
            column_potential[used] -= delta
            slack[1:][free] -= delta
            column = nearest
        while column:  # flip the path back to the root
            before = previous[column]
            owner[column] = owner[before]
            column = before
    columns = np.flatnonzero(owner[1:])
    rows = owner[1:][columns] - 1
    if transposed:
        rows, columns = columns, rows
    order = np.argsort(rows, kind="stable")
    return rows[order].astype(np.intp), columns[order].astype(np.intp)
