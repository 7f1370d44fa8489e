"""`df.mien`: mien's column groups and analyses on any tidy table (fresh, or read back from disk).

Registered on `import mien`; a plain pandas accessor (no DataFrame subclass), so it survives every
pandas operation (filtering, concat, groupby results that keep the columns):

>>> df = mien.analyze("photos/")
>>> df.mien.aus.mean()                       # AU estimates; df.mien.au_probabilities for AUxx_p
>>> df.mien.summarize(by="source")           # faces, expression shares, mean AUs and VA per image
>>> df.mien.compare("condition", "A", "B")   # Mann-Whitney U with Holm correction, per measure
>>> df.mien.landmarks.shape                   # (n, 478, 2) or (n, 478, 3)
>>> df.mien.plot_timeline(0)                  # matplotlib axes; also plot_expressions, plot_aus_on_face,
...                                           # plot_detections; baseline(), segments(), events()
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from mien.expression.aus import AU_NAMES, SIDE_NAMES
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
    def au_sides(self) -> pd.DataFrame:
        """One-sided AU estimates `AU06_L`, `AU06_R`, `AU12_L` ... (subject's left and right)."""
        return self._columns(list(SIDE_NAMES))

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

    def baseline(self, window_s: float = 2.0) -> pd.DataFrame:
        """Copy with `<AU>_delta` and `expr_<class>_delta` columns: each person's values minus their calmest
        `window_s` seconds (`mien.video.timeline.add_baseline`)."""
        from mien.video.timeline import add_baseline

        return add_baseline(self._df, window_s)

    def _track(self, track: int) -> pd.DataFrame:
        found = self._df["face_found"].astype(bool) if "face_found" in self._df.columns else True
        rows = self._df[(self._df["track_id"] == track) & found].sort_values("time_s")
        if rows.empty:
            raise ValueError(f"no rows of track {track}")
        return rows

    def plot_timeline(self, track: int = 0, columns: list[str] | None = None):
        """One person over time: expression probabilities and valence/arousal, or the given `columns`
        (e.g. AUs); smoothed values where the table has them. Returns the matplotlib axes."""
        from mien.report import plots

        rows = self._track(track)
        if columns is None and f"expr_{EXPRESSIONS[0]}" in rows.columns:
            return plots.timeline(rows, list(EXPRESSIONS), f"person {track}").axes[0]
        columns = columns or [au for au in AU_NAMES if au in rows.columns]
        return plots.lines(rows, columns, f"person {track}").axes[0]

    def plot_expressions(self, by: str | None = None):
        """Share of faces in each top expression, overall or per group of `by`; returns the axes."""
        from mien.report.plots import _pyplot

        faces = self._df[self._df["face_found"].astype(bool)] if "face_found" in self._df.columns else self._df
        if "expression" not in faces.columns:
            raise AttributeError("this table has no expression column")
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(7, 3))
        if by is None:
            shares = faces["expression"].value_counts(normalize=True).reindex(list(EXPRESSIONS), fill_value=0.0)
            ax.bar(shares.index, shares.to_numpy(), color="#4c72b0")
        else:
            shares = pd.crosstab(faces[by], faces["expression"], normalize="index")
            shares = shares.reindex(columns=list(EXPRESSIONS), fill_value=0.0)
            width = 0.8 / max(len(shares), 1)
            for k, (group, row) in enumerate(shares.iterrows()):
                ax.bar(np.arange(len(EXPRESSIONS)) + k * width, row.to_numpy(), width, label=str(group))
            ax.set_xticks(np.arange(len(EXPRESSIONS)) + 0.4 - width / 2, list(EXPRESSIONS))
            ax.legend(title=by, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of faces")
        ax.tick_params(axis="x", rotation=30)
        return ax

    def plot_aus_on_face(self, row):
        """AU estimates of one row (an index label) drawn on its mesh (needs landmark columns); returns the axes."""
        from mien.report.plots import aus_on_mesh

        landmarks = self._df.loc[[row]].mien.landmarks[0]
        aus = self._df.loc[row, list(AU_NAMES)].to_numpy(np.float32)
        return aus_on_mesh(landmarks, aus, f"AUs of row {row}").axes[0]

    def plot_detections(self, row, image=None):
        """The faces of the image (or video frame) that row `row` (an index label) belongs to, boxed and
        labelled on `image` (a path or RGB array; default: the row's `source` file). Returns the axes."""
        from mien.io.images import load_image
        from mien.report.plots import _pyplot

        source, frame = self._df.loc[row, "source"], self._df.loc[row, "frame"]
        rgb = load_image(image if image is not None else source).rgb
        rows = self._df[(self._df["source"] == source) & (self._df["frame"] == frame)]
        rows = rows[rows["face_found"].astype(bool)] if "face_found" in rows.columns else rows
        scale = rgb.shape[1] / float(rows["image_width"].iloc[0]) if "image_width" in rows.columns and len(rows) else 1.0
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 6 * rgb.shape[0] / rgb.shape[1]))
        ax.imshow(rgb)
        for _, face in rows.iterrows():
            x, y, w, h = (face[c] * scale for c in ("box_x", "box_y", "box_w", "box_h"))
            ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color="#2ca02c", linewidth=2))
            label = f"#{face['face_id']}"
            if isinstance(face.get("expression"), str):
                label += f" {face['expression']} {face['expression_confidence']:.2f}"
            ax.text(x, y - 4, label, color="white", fontsize=8, backgroundcolor="#2ca02c")
        ax.axis("off")
        return ax
