"""Analysis on the result table: summaries per image, track or group, and group comparisons.

Plain functions on the tidy pandas table that `mien analyze` / `mien video` write:

>>> table = mien.io.table.read_table("faces.parquet")
>>> summarize(table, by="source")                  # per image: faces, expression shares, mean AUs, VA
>>> compare_groups(table, "condition", "A", "B")   # which measures differ, with a proper test
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS

MEASURES = [f"expr_{c}" for c in EXPRESSIONS] + ["valence", "arousal"] + list(AU_NAMES)


def faces_only(table: pd.DataFrame) -> pd.DataFrame:
    """Rows that are faces (drops the `face_found = False` rows of images or frames without faces)."""
    return table[table["face_found"].astype(bool)] if "face_found" in table.columns else table


def summarize(table: pd.DataFrame, by: str | list[str] = "source") -> pd.DataFrame:
    """One row per group: number of face rows, share of each top expression, mean probabilities, VA and AUs."""
    faces = faces_only(table)
    grouped = faces.groupby(by, sort=True)
    out = grouped.size().rename("faces").to_frame()
    if "expression" in faces.columns:  # an OpenFace import has no expressions
        shares = pd.crosstab([faces[b] for b in ([by] if isinstance(by, str) else by)], faces["expression"],
                             normalize="index")
        out = out.join(shares.reindex(columns=list(EXPRESSIONS), fill_value=0.0).add_suffix("_share"))
    means = grouped[[c for c in MEASURES if c in faces.columns]].mean().add_suffix("_mean")
    return out.join(means).reset_index()


def compare_groups(table: pd.DataFrame, group: str, a, b, measures: list[str] | None = None) -> pd.DataFrame:
    """Compare two groups of faces on each measure: Mann-Whitney U test, Holm-corrected (needs the `stats`
    extra, scipy).

    Returns one row per measure: group means, difference (b - a), the rank-biserial effect size
    (-1..1: how often a face from b scores higher than one from a, minus the reverse), the p-value
    and the Holm-adjusted p-value, sorted by it (then by the raw p-value). Faces are treated as independent; several rows
    from one person (video) are not, so compare per-person summaries (`summarize(by="track_id")`)
    in that case.
    """
    stats = _scipy_stats()
    faces = faces_only(table)
    first, second = faces[faces[group] == a], faces[faces[group] == b]
    if len(first) < 2 or len(second) < 2:
        raise ValueError(f"need at least two faces in each group ({group}={a!r}: {len(first)}, {group}={b!r}: {len(second)})")
    rows = []
    for measure in measures or [c for c in MEASURES if c in faces.columns]:
        x, y = first[measure].dropna().to_numpy(), second[measure].dropna().to_numpy()
        if len(x) < 2 or len(y) < 2:
            continue
        test = stats.mannwhitneyu(y, x, alternative="two-sided")
        rows.append({"measure": measure, f"mean_{a}": float(x.mean()), f"mean_{b}": float(y.mean()),
                     "difference": float(y.mean() - x.mean()),
                     "effect_rank_biserial": float(2 * test.statistic / (len(x) * len(y)) - 1),
                     "p_value": float(test.pvalue)})
    result = pd.DataFrame(rows)
    if result.empty:
        return result
    result["p_holm"] = _holm(result["p_value"].to_numpy())
    return result.sort_values(["p_holm", "p_value"], ignore_index=True)


def _scipy_stats():
    """scipy.stats, from the `stats` extra."""
    try:
        from scipy import stats
    except ImportError:
        raise ImportError('group comparisons need scipy: pip install "mien[stats]"') from None
    return stats


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values."""
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted
