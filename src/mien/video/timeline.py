"""Timelines from a video's table: per-person baselines, expression segments, AU and expression
events with onset/apex/offset, micro-expression candidates and a per-track summary.

All functions take the tidy table `mien video` writes (one row per face per frame, with
`track_id` and `time_s`) and return new pandas tables. They read only the columns they need,
so a long video's table can be loaded with `columns=timeline_columns()`.

Micro-expression *candidates* are events shorter than `MICRO_MAX_S` (0.5 s) against the
person's baseline: brief, possibly involuntary displays worth a human look, not verified
micro-expressions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS

MICRO_MAX_S = 0.5
EVENT_COLUMNS = ["track_id", "kind", "label", "onset_s", "apex_s", "offset_s", "duration_s", "peak",
                 "micro_candidate"]


def timeline_columns(smoothed: bool = True) -> list[str]:
    """Columns of the video table the timeline functions use: raw AUs and probabilities (events,
    baselines, summaries) and the label, probabilities and valence/arousal, smoothed when there."""
    suffix = "_smooth" if smoothed else ""
    probs = [f"expr_{c}" for c in EXPRESSIONS]
    shown = ["expression", "valence", "arousal"] + probs
    return (["track_id", "time_s"] + probs + list(AU_NAMES)
            + [f"{c}{suffix}" for c in shown if f"{c}{suffix}" not in probs])


def _tracks(table: pd.DataFrame):
    """(track id, its rows in time order) per track; no copies beyond one per track (long videos)."""
    ids = table["track_id"].to_numpy()
    for track_id in np.unique(ids[ids >= 0]):
        rows = table[ids == track_id]
        if not rows["time_s"].is_monotonic_increasing:
            rows = rows.sort_values("time_s")
        yield int(track_id), rows


def _column(table: pd.DataFrame, name: str) -> str:
    """The smoothed column when the table has it, else the raw one."""
    return f"{name}_smooth" if f"{name}_smooth" in table.columns else name


def add_baseline(table: pd.DataFrame, window_s: float = 2.0) -> pd.DataFrame:
    """Copy of `table` with `<AU>_delta` and `expr_<class>_delta` columns: values minus the track's baseline.

    The baseline is the mean over the track's calmest `window_s` seconds: the window with the
    lowest mean total AU activity (or the whole track when it is shorter). Works on the AU and
    expression columns the table has (an OpenFace import has AUs only).
    """
    values = [c for c in _BASELINE_VALUES if c in table.columns]
    deltas = [f"{name}_delta" for name in values]
    out = table.copy()
    for name in deltas:
        out[name] = np.float32(np.nan)
    for _, rows in _tracks(table):
        out.loc[rows.index, deltas] = _deltas(rows, values, window_s)
    return out


_BASELINE_VALUES = list(AU_NAMES) + [f"expr_{c}" for c in EXPRESSIONS]


def _deltas(rows: pd.DataFrame, values: list[str], window_s: float) -> np.ndarray:
    """(n, len(values)) one track's AUs and probabilities minus their calmest-window mean."""
    base = _calmest(rows, window_s)[values].mean().to_numpy(np.float32)
    return rows[values].to_numpy(np.float32) - base


def _calmest(rows: pd.DataFrame, window_s: float) -> pd.DataFrame:
    t = rows["time_s"].to_numpy()
    if t[-1] - t[0] <= window_s:
        return rows
    aus = [au for au in AU_NAMES if au in rows.columns]
    activity = pd.Series(rows[aus].sum(1).to_numpy(), index=pd.to_timedelta(t, unit="s"))
    trailing = activity.rolling(pd.Timedelta(seconds=window_s)).mean().to_numpy(copy=True)
    trailing[t - t[0] < window_s * 0.9] = np.inf  # windows not yet full
    end = int(np.argmin(trailing))
    start = int(np.searchsorted(t, t[end] - window_s, side="right"))
    return rows.iloc[start:end + 1]


def expression_segments(table: pd.DataFrame, min_s: float = MICRO_MAX_S) -> pd.DataFrame:
    """Per track, runs of the same top expression (smoothed when available) with start and end.

    Runs shorter than `min_s` are merged into the run before them (brief flickers are events,
    see `events`). Columns: track_id, expression, start_s, end_s, duration_s, mean_confidence.
    """
    label_col = _column(table, "expression")
    records = []
    for track_id, rows in _tracks(table):
        known = rows[label_col].notna().to_numpy()
        if not known.any():
            continue
        t = rows["time_s"].to_numpy()[known]
        step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
        labels = np.asarray(rows[label_col].to_numpy())[known]
        probs = rows[[_column(table, f"expr_{c}") for c in EXPRESSIONS]].to_numpy()[known]
        runs = []  # [label, first index, last index]
        for i, label in enumerate(labels):
            if runs and runs[-1][0] == label and t[i] - t[runs[-1][2]] <= 3 * step + 1e-9:
                runs[-1][2] = i
            else:
                runs.append([label, i, i])
        merged = []
        for run in runs:
            short = t[run[2]] - t[run[1]] + step < min_s
            if merged and (short or merged[-1][0] == run[0]) and t[run[1]] - t[merged[-1][2]] <= 3 * step + 1e-9:
                merged[-1][2] = run[2]
            else:
                merged.append(run)
        for label, first, last in merged:
            idx = EXPRESSIONS.index(label)
            records.append({"track_id": track_id, "expression": label, "start_s": t[first],
                            "end_s": t[last] + step, "duration_s": t[last] + step - t[first],
                            "mean_confidence": float(np.nanmean(probs[first:last + 1, idx]))})
    return pd.DataFrame(records, columns=["track_id", "expression", "start_s", "end_s", "duration_s",
                                          "mean_confidence"])


def events(table: pd.DataFrame, au_on: float = 0.25, au_off: float = 0.12, expr_on: float = 0.35,
           expr_off: float = 0.15, window_s: float = 2.0, min_frames: int = 2) -> pd.DataFrame:
    """AU and expression events against each person's baseline, with onset, apex and offset.

    An event starts when a value rises `on` above the track's baseline (`add_baseline`) and ends
    when it falls back below `off`; its apex is the highest point. Raw (unsmoothed) values are
    used so brief displays keep their height; single-frame blips (fewer than `min_frames` frames)
    are dropped as noise. Events shorter than `MICRO_MAX_S` are flagged
    `micro_candidate`. Columns: `EVENT_COLUMNS`.
    """
    records = []
    measured = [c for c in _BASELINE_VALUES if c in table.columns]
    signals = [("au", au, measured.index(au), au_on, au_off) for au in AU_NAMES if au in measured]
    signals += [("expression", c, measured.index(f"expr_{c}"), expr_on, expr_off)
                for c in EXPRESSIONS if c != "neutral" and f"expr_{c}" in measured]
    for track_id, rows in _tracks(table):  # one track at a time: memory stays small on long videos
        t = rows["time_s"].to_numpy()
        step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
        deltas = _deltas(rows, measured, window_s)
        for kind, label, column, on, off in signals:
            for first, last in _above(deltas[:, column], on, off):
                if last - first + 1 < min_frames:
                    continue
                values = deltas[first:last + 1, column]
                apex = first + int(np.nanargmax(values))
                duration = t[last] - t[first] + step
                records.append({"track_id": track_id, "kind": kind, "label": label, "onset_s": t[first],
                                "apex_s": t[apex], "offset_s": t[last] + step, "duration_s": duration,
                                "peak": float(np.nanmax(values)), "micro_candidate": duration < MICRO_MAX_S})
    frame = pd.DataFrame(records, columns=EVENT_COLUMNS)
    return frame.sort_values(["track_id", "onset_s", "kind", "label"], ignore_index=True)


def _above(values: np.ndarray, on: float, off: float) -> list[tuple[int, int]]:
    """(first, last) index pairs of hysteresis intervals: start above `on`, end before falling below `off`."""
    intervals, start = [], None
    for i, v in enumerate(np.nan_to_num(values, nan=-np.inf)):
        if start is None and v > on:
            start = i
        elif start is not None and v < off:
            intervals.append((start, i - 1))
            start = None
    if start is not None:
        intervals.append((start, len(values) - 1))
    return intervals


TRACK_COLUMNS = (["track_id", "first_s", "last_s", "frames"] + [f"{c}_{k}" for c in EXPRESSIONS for k in ("share", "s")]
                 + ["valence_mean", "arousal_mean"] + [f"{au}_mean" for au in AU_NAMES])


def track_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per track: time span, frames, seconds and share in each expression, mean AUs and VA (`TRACK_COLUMNS`;
    no rows, the same columns, for a video without faces)."""
    label_col = _column(table, "expression")
    records = []
    for track_id, rows in _tracks(table):
        t = rows["time_s"].to_numpy()
        step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
        record = {"track_id": track_id, "first_s": t[0], "last_s": t[-1] + step, "frames": len(rows)}
        labels = rows[label_col]
        for c in EXPRESSIONS:
            share = float((labels == c).mean())
            record[f"{c}_share"] = share
            record[f"{c}_s"] = share * len(rows) * step
        record["valence_mean"] = float(rows[_column(table, "valence")].mean())
        record["arousal_mean"] = float(rows[_column(table, "arousal")].mean())
        record.update({f"{au}_mean": float(rows[au].mean()) for au in AU_NAMES})
        records.append(record)
    return pd.DataFrame(records, columns=TRACK_COLUMNS)
