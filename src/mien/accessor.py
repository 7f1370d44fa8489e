"""`df.mien`: mien's column groups and analyses on any tidy table (fresh, or read back from disk).

Registered on `import mien`; a plain pandas accessor (no DataFrame subclass), so it survives every
pandas operation (filtering, concat, groupby results that keep the columns):

>>> df = mien.analyze("photos/")
>>> df.mien.aus.mean()                       # AU estimates; df.mien.au_probabilities for AUxx_p
>>> df.mien.summarize(by="source")           # faces, expression shares, mean AUs and VA per image
>>> df.mien.compare("condition", "A", "B")   # Mann-Whitney U with Holm correction, per measure
>>> df.mien.landmarks.shape                   # (n, 478, 2) or (n, 478, 3)
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS
from mien.faces import N_LANDMARKS, QUALITY_FLAGS


@pd.api.extensions.register_dataframe_accessor("mien")
class MienAccessor:
    """Column groups (`aus`, `au_probabilities`, `expressions`, `blendshapes`, `pose`, `gaze`, `affect`,
    `quality`), `landmarks` as an array, per-face iteration, and the analyses of `mien.analysis`."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._df = frame

    def _columns(self, names: list[str]) -> pd.DataFrame:
        present = [c for c in names if c in self._df.columns]
        if not present:
            raise AttributeError(f"this table has none of the columns {names[:3]}...: not a mien table?")
        return self._df[present]

    @property
    def aus(self) -> pd.DataFrame:
        """AU intensity estimates `AU01` ... `AU45` (0-1)."""
        return self._columns(list(AU_NAMES))

    @property
    def au_probabilities(self) -> pd.DataFrame:
        """Learned AU occurrence probabilities `AU01_p` ... `AU45_p`."""
        return self._columns([f"{au}_p" for au in AU_NAMES])

    @property
    def expressions(self) -> pd.DataFrame:
        """Calibrated probabilities `expr_neutral` ... `expr_contempt`."""
        return self._columns([f"expr_{c}" for c in EXPRESSIONS])

    @property
    def blendshapes(self) -> pd.DataFrame:
        return self._df[[c for c in self._df.columns if c.startswith("bs_")]]

    @property
    def pose(self) -> pd.DataFrame:
        return self._columns(["pose_yaw", "pose_pitch", "pose_roll"])

    @property
    def gaze(self) -> pd.DataFrame:
        return self._columns(["gaze_yaw", "gaze_pitch"])

    @property
    def affect(self) -> pd.DataFrame:
        return self._columns(["valence", "arousal"])

    @property
    def quality(self) -> pd.DataFrame:
        return self._columns(["sharpness"] + [f"flag_{f}" for f in QUALITY_FLAGS])

    @property
    def landmarks(self) -> np.ndarray:
        """(n, 478, 2) mesh points in pixels, or (n, 478, 3) when the table has `lm_z_*` columns."""
        axes = [a for a in "xyz" if f"lm_{a}_0" in self._df.columns]
        if not axes:
            raise AttributeError("this table has no landmark columns (written with --landmarks none)")
        cols = [f"lm_{a}_{i}" for a in axes for i in range(N_LANDMARKS)]
        values = self._df[cols].to_numpy(np.float32).reshape(len(self._df), len(axes), N_LANDMARKS)
        return values.transpose(0, 2, 1)

    def faces(self) -> Iterator[tuple[int, pd.Series]]:
        """(row index, row) for every row that is a face (not the rows of images without faces)."""
        found = self._df[self._df["face_found"].astype(bool)] if "face_found" in self._df.columns else self._df
        return found.iterrows()

    def summarize(self, by: str | list[str] = "source") -> pd.DataFrame:
        """Per group: faces, expression shares, mean AUs and valence/arousal (`mien.analysis.summarize`)."""
        from mien.analysis import summarize

        return summarize(self._df, by=by)

    def compare(self, column: str, a, b, measures: list[str] | None = None) -> pd.DataFrame:
        """Which measures differ between `column == a` and `column == b` (Mann-Whitney U, Holm)."""
        from mien.analysis import compare_groups

        return compare_groups(self._df, column, a, b, measures)

    def segments(self) -> pd.DataFrame:
        """Expression segments per track (video tables)."""
        from mien.video.timeline import expression_segments

        return expression_segments(self._df)

    def events(self) -> pd.DataFrame:
        """AU and expression events per track, against each person's calmest moment (video tables)."""
        from mien.video.timeline import events

        return events(self._df)

    def plot_timeline(self, track: int = 0):
        """Expression probabilities of one person over time; returns the matplotlib axes."""
        from mien.report import plots

        rows = self._df[(self._df["track_id"] == track) & self._df["face_found"].astype(bool)].sort_values("time_s")
        if rows.empty:
            raise ValueError(f"no rows of track {track}")
        return plots.timeline(rows, list(EXPRESSIONS), f"person {track}").axes[0]
