"""Tidy tables: one row per face per image/frame, with stable column names.

Columns (in order):
- identity: `source`, `frame`, `time_s`, `face_id`, `track_id`, `image_width`, `image_height`,
  `face_found` (False on the single row written for an image without faces);
- box: `box_x`, `box_y`, `box_w`, `box_h` (pixels, top-left origin), `box_score`;
- head pose `pose_yaw`, `pose_pitch`, `pose_roll` and gaze `gaze_yaw`, `gaze_pitch` (degrees);
- action-unit estimates `AU01` ... `AU45` (0-1) and blendshapes `bs_<name>` (0-1);
- quality: `sharpness` and bool `flag_<name>` for each quality flag;
- landmarks (optional): `lm_x_<i>`, `lm_y_<i>` (and `lm_z_<i>` for "3d"), pixels.

`--format openface` renames to OpenFace 2.x names (see `to_openface`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import pandas as pd

from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS
from mien.face.blendshapes import BLENDSHAPE_NAMES, column_name
from mien.faces import N_LANDMARKS, QUALITY_FLAGS, Faces

LandmarkColumns = Literal["none", "2d", "3d"]
ID_COLUMNS = ["source", "frame", "time_s", "face_id", "track_id", "image_width", "image_height", "face_found"]
BOX_COLUMNS = ["box_x", "box_y", "box_w", "box_h", "box_score"]
POSE_COLUMNS = ["pose_yaw", "pose_pitch", "pose_roll", "gaze_yaw", "gaze_pitch"]
AU_COLUMNS = list(AU_NAMES)
BLENDSHAPE_COLUMNS = [column_name(n) for n in BLENDSHAPE_NAMES]
FLAG_COLUMNS = [f"flag_{name}" for name in QUALITY_FLAGS]
# Calibrated class probabilities, the top class and its probability, derived valence/arousal.
EXPRESSION_COLUMNS = [f"expr_{name}" for name in EXPRESSIONS] + [
    "expression", "expression_confidence", "expression_status", "expression_blend", "expression_familiarity",
    "valence", "arousal"]


# Optional apparent attributes (`--attributes`): present only when the attribute stage ran.
ATTRIBUTE_COLUMNS = ["apparent_age", "apparent_age_low", "apparent_age_high", "gender_presentation",
                     "gender_presentation_p_female"]


# Temporally smoothed copies (video mode, `mien.video.smoothing`); raw columns are kept.
SMOOTH_COLUMNS = ([f"{c}_smooth" for c in POSE_COLUMNS] + [f"expr_{name}_smooth" for name in EXPRESSIONS]
                  + ["expression_smooth", "valence_smooth", "arousal_smooth"] + [f"{au}_smooth" for au in AU_NAMES])


def landmark_columns(landmarks: LandmarkColumns) -> list[str]:
    axes = {"none": "", "2d": "xy", "3d": "xyz"}[landmarks]
    return [f"lm_{a}_{i}" for a in axes for i in range(N_LANDMARKS)]


def columns(landmarks: LandmarkColumns = "2d", smoothed: bool = False, attributes: bool = False) -> list[str]:
    """All column names of the tidy table, in order."""
    return (ID_COLUMNS + BOX_COLUMNS + POSE_COLUMNS + EXPRESSION_COLUMNS + (ATTRIBUTE_COLUMNS if attributes else [])
            + AU_COLUMNS + BLENDSHAPE_COLUMNS
            + ["sharpness"] + FLAG_COLUMNS + (SMOOTH_COLUMNS if smoothed else []) + landmark_columns(landmarks))


def _smooth_block(faces: Faces) -> dict[str, np.ndarray]:
    n = len(faces)
    sm = faces.smoothed
    nan = np.full((n, 40), np.nan, np.float32)
    pose = np.concatenate([sm.get("pose", nan[:, :3]), sm.get("gaze", nan[:, :2])], 1)
    expression, aus, affect = sm.get("expression", nan[:, :8]), sm.get("aus", nan[:, :20]), sm.get("affect", nan[:, :2])
    cols = {f"{c}_smooth": pose[:, i] for i, c in enumerate(POSE_COLUMNS)}
    cols.update({f"expr_{name}_smooth": expression[:, i] for i, name in enumerate(EXPRESSIONS)})
    cols["expression_smooth"] = np.array([None if np.isnan(p).any() else EXPRESSIONS[int(p.argmax())]
                                          for p in expression], dtype=object)
    cols["valence_smooth"], cols["arousal_smooth"] = affect[:, 0], affect[:, 1]
    cols.update({f"{au}_smooth": aus[:, i] for i, au in enumerate(AU_NAMES)})
    return cols


def _face_block(faces: Faces, landmarks: LandmarkColumns, smoothed: bool = False) -> dict[str, np.ndarray]:
    n = len(faces)
    boxes = faces.boxes
    cols: dict[str, np.ndarray] = {
        "source": np.full(n, faces.source, dtype=object),
        "frame": np.full(n, faces.frame, dtype=np.int64),
        "time_s": np.full(n, np.nan if faces.time_s is None else faces.time_s, dtype=np.float64),
        "face_id": np.arange(n, dtype=np.int64),
        "track_id": faces.track_ids.astype(np.int64),
        "image_width": np.full(n, faces.image_size[1], dtype=np.int64),
        "image_height": np.full(n, faces.image_size[0], dtype=np.int64),
        "face_found": np.ones(n, dtype=bool),
        "box_x": boxes[:, 0], "box_y": boxes[:, 1],
        "box_w": boxes[:, 2] - boxes[:, 0], "box_h": boxes[:, 3] - boxes[:, 1],
        "box_score": faces.scores,
        "pose_yaw": faces.pose[:, 0], "pose_pitch": faces.pose[:, 1], "pose_roll": faces.pose[:, 2],
        "gaze_yaw": faces.gaze[:, 0], "gaze_pitch": faces.gaze[:, 1],
    }
    cols.update({f"expr_{name}": faces.expression[:, i] for i, name in enumerate(EXPRESSIONS)})
    cols["expression"] = np.array(faces.top_expression, dtype=object)
    confidence = np.nan_to_num(faces.expression, nan=-1.0).max(1, initial=-1.0)
    cols["expression_confidence"] = np.where(confidence < 0, np.nan, confidence).astype(np.float32)
    cols["expression_status"], cols["expression_blend"] = faces.status, faces.blend
    cols["expression_familiarity"] = faces.familiarity
    cols["valence"], cols["arousal"] = faces.affect[:, 0], faces.affect[:, 1]
    cols.update({name: faces.aus[:, i] for i, name in enumerate(AU_COLUMNS)})
    cols.update({name: faces.blendshapes[:, i] for i, name in enumerate(BLENDSHAPE_COLUMNS)})
    cols["sharpness"] = faces.blur
    cols.update({name: faces.flags[:, i] for i, name in enumerate(FLAG_COLUMNS)})
    if smoothed:
        cols.update(_smooth_block(faces))
    if faces.age is not None:
        cols.update(_attribute_block(faces.age, faces.female))
    axes = {"none": "", "2d": "xy", "3d": "xyz"}[landmarks]
    for a in axes:
        values = faces.landmarks[:, :, "xyz".index(a)]
        cols.update({f"lm_{a}_{i}": values[:, i] for i in range(N_LANDMARKS)})
    return cols


def _attribute_block(age: np.ndarray, female: np.ndarray) -> dict[str, np.ndarray]:
    label = np.where(np.isnan(female), None, np.where(female >= 0.5, "female", "male")).astype(object)
    return {"apparent_age": age[:, 0], "apparent_age_low": age[:, 1], "apparent_age_high": age[:, 2],
            "gender_presentation": label, "gender_presentation_p_female": female.astype(np.float32)}


def _empty_row(faces: Faces, landmarks: LandmarkColumns, smoothed: bool = False) -> dict[str, np.ndarray]:
    row = {name: np.array([np.nan], dtype=np.float32) for name in columns(landmarks, smoothed)}
    row.update({
        "source": np.array([faces.source], dtype=object),
        "frame": np.array([faces.frame], dtype=np.int64),
        "time_s": np.array([np.nan if faces.time_s is None else faces.time_s]),
        "face_id": np.array([-1], dtype=np.int64), "track_id": np.array([-1], dtype=np.int64),
        "image_width": np.array([faces.image_size[1]], dtype=np.int64),
        "image_height": np.array([faces.image_size[0]], dtype=np.int64),
        "face_found": np.array([False]),
        "expression": np.array([None], dtype=object),
        "expression_status": np.array([None], dtype=object),
        "expression_blend": np.array([None], dtype=object),
    })
    if smoothed:
        row["expression_smooth"] = np.array([None], dtype=object)
    if faces.age is not None:
        row.update(_attribute_block(np.full((1, 3), np.nan, np.float32), np.full(1, np.nan, np.float32)))
    row.update({name: np.array([False]) for name in FLAG_COLUMNS})
    return row


def faces_to_frame(frames: Iterable[Faces], landmarks: LandmarkColumns = "2d",
                   empty_rows: bool = True, smoothed: bool = False) -> pd.DataFrame:
    """Tidy DataFrame, one row per face, from one or more `Faces`.

    Args:
        frames: Faces of each image or video frame.
        landmarks: "none", "2d" (x, y) or "3d" (x, y, z) landmark columns.
        empty_rows: write one `face_found=False` row for frames without faces.
        smoothed: add the `*_smooth` columns (video mode).
    """
    blocks = []
    for faces in frames:
        if len(faces):
            blocks.append(_face_block(faces, landmarks, smoothed))
        elif empty_rows:
            blocks.append(_empty_row(faces, landmarks, smoothed))
    attributes = any("apparent_age" in b for b in blocks)
    for b in blocks:
        if attributes and "apparent_age" not in b:
            n = len(b["source"])
            b.update(_attribute_block(np.full((n, 3), np.nan, np.float32), np.full(n, np.nan, np.float32)))
    names = columns(landmarks, smoothed, attributes)
    if not blocks:
        return pd.DataFrame({name: pd.Series(dtype=_dtype(name)) for name in names})
    data = {name: np.concatenate([b[name] for b in blocks]) for name in names}
    frame = pd.DataFrame(data, columns=names)
    return frame.astype({name: _dtype(name) for name in names})


def _dtype(name: str) -> str:
    if name in ("source", "expression", "expression_smooth", "expression_status", "expression_blend",
                "gender_presentation"):
        return "object"
    if name in ("frame", "face_id", "track_id", "image_width", "image_height"):
        return "int64"
    if name == "face_found" or name.startswith("flag_"):
        return "bool"
    if name == "time_s":
        return "float64"
    return "float32"


def to_openface(frame: pd.DataFrame) -> pd.DataFrame:
    """Rename/convert to OpenFace 2.x column conventions, for users migrating from OpenFace.

    `confidence`, `success`, `timestamp`; `pose_Rx/Ry/Rz` = pitch, yaw, roll and
    `gaze_angle_x/y` = gaze yaw, pitch, all in radians (mien's sign convention); `AUxx_r`
    intensity on OpenFace's 0-5 scale; `AUxx_c` presence (estimate >= 0.3); landmarks `x_i`,
    `y_i`, `z_i`. Other mien columns (blendshapes, flags) are kept under their own names.
    """
    cols = {
        "input": frame["source"], "frame": frame["frame"], "face_id": frame["face_id"],
        "timestamp": frame["time_s"].fillna(0.0),
        "confidence": frame["box_score"], "success": frame["face_found"].astype(int),
        "gaze_angle_x": np.radians(frame["gaze_yaw"]), "gaze_angle_y": np.radians(frame["gaze_pitch"]),
        "pose_Rx": np.radians(frame["pose_pitch"]), "pose_Ry": np.radians(frame["pose_yaw"]),
        "pose_Rz": np.radians(frame["pose_roll"]),
    }
    cols.update({f"{au}_r": (frame[au] * 5.0).astype(np.float32) for au in AU_COLUMNS})
    cols.update({f"{au}_c": (frame[au] >= 0.3).astype(int) for au in AU_COLUMNS})
    cols.update({c.replace("lm_", "", 1): frame[c] for c in frame.columns if c.startswith("lm_")})
    keep = [c for c in frame.columns if c.startswith(("expr_", "bs_", "flag_", "box_"))
            or c in ("sharpness", "expression", "expression_confidence", "expression_status", "expression_blend",
                     "expression_familiarity", "valence", "arousal")]
    cols.update({c: frame[c] for c in keep})
    return pd.DataFrame(cols)


TableFormat = Literal["auto", "parquet", "csv", "jsonl", "openface"]
_SUFFIX_FORMAT = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}


def resolve_format(path: Path, fmt: TableFormat) -> tuple[str, bool]:
    """(file format, openface naming) for an output path and a --format choice."""
    by_suffix = _SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt == "openface":
        return by_suffix or "csv", True
    if fmt == "auto":
        if by_suffix is None:
            raise ValueError(f"{path}: unknown table suffix; use .parquet, .csv or .jsonl, or --format")
        return by_suffix, False
    return fmt, False


class TableWriter:
    """Appends tidy rows to a Parquet, CSV or JSON Lines file as they are produced.

    Rows written before an error elsewhere stay in the file; Parquet is finalised on `close()`
    (use as a context manager), CSV and JSON Lines are flushed after each write.
    """

    def __init__(self, path: str | Path, fmt: TableFormat = "auto") -> None:
        self.path = Path(path)
        self.format, self.openface = resolve_format(self.path, fmt)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = 0
        self._parquet = None
        self._schema = None
        self._file = None

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, frame: pd.DataFrame) -> None:
        if self.openface:
            frame = to_openface(frame)
        if self.format == "parquet":
            self._write_parquet(frame)
        elif self.format == "csv":
            if self._file is None:
                self._file = open(self.path, "w", newline="", encoding="utf-8")
                frame.to_csv(self._file, index=False)
            else:
                frame.to_csv(self._file, index=False, header=False)
            self._file.flush()
        elif self.format == "jsonl":
            if self._file is None:
                self._file = open(self.path, "w", encoding="utf-8")
            for record in json_records(frame):
                self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        else:
            raise ValueError(f"unknown table format {self.format!r}")
        self.rows += len(frame)

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(self.path, self._schema)
        self._parquet.write_table(table)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if self._file is not None:
            self._file.close()
            self._file = None


def json_records(frame: pd.DataFrame) -> list[dict]:
    """A frame's rows as JSON-ready dicts (NaN -> None, numpy scalars -> Python)."""
    return [{k: json_value(v) for k, v in record.items()} for record in frame.to_dict(orient="records")]


def json_value(value):
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by `TableWriter` (Parquet, CSV or JSON Lines) back into pandas."""
    path = Path(path)
    fmt = _SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt == "parquet":
        return pd.read_parquet(path)
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "jsonl":
        return pd.read_json(path, lines=True)
    raise ValueError(f"{path}: unknown table suffix")
