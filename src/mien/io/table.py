"""Tidy tables: one row per face per image/frame, with stable column names.

Columns (in order):
- identity: `source`, `frame`, `time_s`, `face_id`, `track_id`, `image_width`, `image_height`,
  `face_found` (False on the single row written for an image without faces);
- box: `box_x`, `box_y`, `box_w`, `box_h` (pixels, top-left origin), `box_score`;
- head pose `pose_yaw`, `pose_pitch`, `pose_roll` and gaze `gaze_yaw`, `gaze_pitch` (degrees);
- action-unit estimates `AU01` ... `AU45` (0-1), learned occurrence probabilities `AU01_p` ...
  `AU45_p`, and blendshapes `bs_<name>` (0-1);
- quality: `sharpness` and bool `flag_<name>` for each quality flag;
- landmarks (optional): `lm_x_<i>`, `lm_y_<i>` (and `lm_z_<i>` for "3d"), pixels.

`--format openface` writes OpenFace 2.x names and conventions (see `mien.io.openface`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal

import numpy as np
import pandas as pd

from mien.expression.aus import AU_NAMES, SIDE_NAMES
from mien.expression.classes import EXPRESSIONS
from mien.expression.compound import named as named_compounds
from mien.face.blendshapes import BLENDSHAPE_NAMES, column_name
from mien.face.mesh_net import N_LANDMARKS
from mien.face.quality import QUALITY_FLAGS
from mien.options import LandmarkColumns

if TYPE_CHECKING:  # the table reads Faces; Faces.to_pandas imports this module
    from mien.faces import Faces


ID_COLUMNS = ["source", "frame", "time_s", "face_id", "track_id", "image_width", "image_height", "face_found"]
BOX_COLUMNS = ["box_x", "box_y", "box_w", "box_h", "box_score"]
POSE_COLUMNS = ["pose_yaw", "pose_pitch", "pose_roll", "gaze_yaw", "gaze_pitch"]
AU_COLUMNS = list(AU_NAMES)
# One-sided estimates (`mien.expression.aus.estimate_sides`): AU06_L, AU06_R, AU12_L ...
AU_SIDE_COLUMNS = list(SIDE_NAMES)
# Learned occurrence probabilities (`mien.expression.au_model`), one per AU estimate.
AU_PROB_COLUMNS = [f"{au}_p" for au in AU_NAMES]
BLENDSHAPE_COLUMNS = [column_name(n) for n in BLENDSHAPE_NAMES]
FLAG_COLUMNS = [f"flag_{name}" for name in QUALITY_FLAGS]
# Calibrated class probabilities, the top class and its probability, derived valence/arousal.
EXPRESSION_COLUMNS = [f"expr_{name}" for name in EXPRESSIONS] + [
    "expression", "expression_confidence", "expression_status", "expression_blend", "expression_familiarity",
    "valence", "arousal", "compound", "compound_confidence"]


# Optional apparent attributes (`--attributes`): present only when the attribute stage ran.
ATTRIBUTE_COLUMNS = ["apparent_age", "apparent_age_low", "apparent_age_high", "gender_presentation",
                     "gender_presentation_p_female"]


# Temporally smoothed copies (video mode, `mien.video.smoothing`); raw columns are kept.
SMOOTH_COLUMNS = ([f"{c}_smooth" for c in POSE_COLUMNS] + [f"expr_{name}_smooth" for name in EXPRESSIONS]
                  + ["expression_smooth", "valence_smooth", "arousal_smooth"] + [f"{au}_smooth" for au in AU_NAMES]
                  + ["compound_smooth", "compound_confidence_smooth"])


def landmark_columns(landmarks: LandmarkColumns) -> list[str]:
    axes = {"none": "", "2d": "xy", "3d": "xyz"}[landmarks]
    return [f"lm_{a}_{i}" for a in axes for i in range(N_LANDMARKS)]


def columns(landmarks: LandmarkColumns = "2d", smoothed: bool = False, attributes: bool = False) -> list[str]:
    """All column names of the tidy table, in order."""
    return (ID_COLUMNS + BOX_COLUMNS + POSE_COLUMNS + EXPRESSION_COLUMNS + (ATTRIBUTE_COLUMNS if attributes else [])
            + AU_COLUMNS + AU_SIDE_COLUMNS + AU_PROB_COLUMNS + BLENDSHAPE_COLUMNS
            + ["sharpness"] + FLAG_COLUMNS + (SMOOTH_COLUMNS if smoothed else []) + landmark_columns(landmarks))


# Column types, declared once: every writer and reader of mien tables uses this schema.
STRING_COLUMNS = frozenset({"source", "expression", "expression_smooth", "expression_status", "expression_blend",
                            "compound", "compound_smooth", "gender_presentation"})
INT_COLUMNS = frozenset({"frame", "face_id", "track_id", "image_width", "image_height"})


def _is_bool(name: str) -> bool:
    return name == "face_found" or name.startswith("flag_")


def arrow_type(name: str):
    """The declared Arrow type of a tidy-table column (strings nullable; floats float32 but `time_s`)."""
    import pyarrow as pa

    if name in STRING_COLUMNS:
        return pa.string()
    if name in INT_COLUMNS:
        return pa.int64()
    if _is_bool(name):
        return pa.bool_()
    return pa.float64() if name == "time_s" else pa.float32()


def table_schema(landmarks: LandmarkColumns = "2d", smoothed: bool = False, attributes: bool = False):
    """The pyarrow schema of a tidy table with these optional column groups."""
    import pyarrow as pa

    return pa.schema([pa.field(name, arrow_type(name)) for name in columns(landmarks, smoothed, attributes)])


def _top_probability(probabilities: np.ndarray) -> np.ndarray:
    """(n,) the largest of each row's probabilities (NaN rows stay NaN)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(probabilities).any(1), np.nan,
                        np.nan_to_num(probabilities, nan=-1.0).max(1, initial=-1.0))


def _float_block(faces: Faces, landmarks: LandmarkColumns, smoothed: bool, attributes: bool) -> np.ndarray:
    """(n, k) float32 of every float column of `faces`, in `columns()` order."""
    n = len(faces)
    boxes = faces.boxes
    expression = faces.expression
    pieces = [boxes[:, :2], boxes[:, 2:] - boxes[:, :2], faces.scores[:, None], faces.pose, faces.gaze, expression,
              _top_probability(expression)[:, None], faces.familiarity[:, None], faces.affect,
              named_compounds(faces.compound)[1][:, None]]
    if attributes:
        age = faces.age if faces.age is not None else np.full((n, 3), np.nan, np.float32)
        female = faces.female if faces.female is not None else np.full(n, np.nan, np.float32)
        pieces += [age, female[:, None]]
    pieces += [faces.aus, faces.au_sides, faces.au_prob, faces.blendshapes, faces.sharpness[:, None]]
    if smoothed:
        sm = faces.smoothed
        nan = np.full((n, 20), np.nan, np.float32)
        affect = sm.get("affect", nan[:, :2])
        pieces += [sm.get("pose", nan[:, :3]), sm.get("gaze", nan[:, :2]), sm.get("expression", nan[:, :8]),
                   affect, sm.get("aus", nan), named_compounds(sm.get("compound", nan[:, :14]))[1][:, None]]
    axes = {"none": (), "2d": (0, 1), "3d": (0, 1, 2)}[landmarks]
    pieces += [faces.landmarks[:, :, a] for a in axes]
    return np.concatenate([np.asarray(p, np.float32).reshape(n, -1) for p in pieces], 1)


def _float_names(landmarks: LandmarkColumns, smoothed: bool, attributes: bool) -> list[str]:
    names = (BOX_COLUMNS + POSE_COLUMNS + [f"expr_{e}" for e in EXPRESSIONS]
             + ["expression_confidence", "expression_familiarity", "valence", "arousal", "compound_confidence"])
    if attributes:
        names += ["apparent_age", "apparent_age_low", "apparent_age_high", "gender_presentation_p_female"]
    names += AU_COLUMNS + AU_SIDE_COLUMNS + AU_PROB_COLUMNS + BLENDSHAPE_COLUMNS + ["sharpness"]
    if smoothed:
        names += ([f"{c}_smooth" for c in POSE_COLUMNS] + [f"expr_{e}_smooth" for e in EXPRESSIONS]
                  + ["valence_smooth", "arousal_smooth"] + [f"{au}_smooth" for au in AU_NAMES]
                  + ["compound_confidence_smooth"])
    return names + landmark_columns(landmarks)


def _top_labels(probs: np.ndarray, names: tuple[str, ...] = EXPRESSIONS) -> list[str | None]:
    missing = np.isnan(probs).any(1)
    top = np.nan_to_num(probs, nan=-1.0).argmax(1)
    return [None if m else names[t] for m, t in zip(missing, top)]


def faces_to_arrow(frames: Iterable[Faces], landmarks: LandmarkColumns = "2d", empty_rows: bool = True,
                   smoothed: bool = False, attributes: bool | None = None):
    """Tidy pyarrow Table (schema `table_schema`), one row per face, built column-wise from `Faces` arrays.

    Args:
        frames: Faces of each image or video frame.
        landmarks: "none", "2d" (x, y) or "3d" (x, y, z) landmark columns.
        empty_rows: write one `face_found=False` row for frames without faces.
        smoothed: add the `*_smooth` columns (video mode).
        attributes: add the apparent-attribute columns (None: when any frame has them).
    """
    import pyarrow as pa

    frames = [f for f in frames if len(f) or empty_rows]
    if attributes is None:
        attributes = any(f.age is not None for f in frames)
    schema = table_schema(landmarks, smoothed, attributes)
    if not frames:
        return schema.empty_table()
    float_names = _float_names(landmarks, smoothed, attributes)
    counts = np.array([max(len(f), 1) for f in frames])
    floats, flags, face_ids, tracks = [], [], [], []
    strings: dict[str, list] = {name: [] for name in STRING_COLUMNS if name in schema.names}
    for f in frames:
        n = len(f)
        if n:
            floats.append(_float_block(f, landmarks, smoothed, attributes))
            flags.append(f.flags)
            face_ids.append(np.arange(n))
            tracks.append(f.track_ids)
            labels, compounds = _top_labels(f.expression), named_compounds(f.compound)[0]
            status, blend = list(f.status), list(f.blend)
            gender = (None if f.female is None else
                      [None if np.isnan(p) else ("female" if p >= 0.5 else "male") for p in f.female])
            smooth = _top_labels(f.smoothed["expression"]) if smoothed and "expression" in f.smoothed else [None] * n
            smooth_compounds = (named_compounds(f.smoothed["compound"])[0] if smoothed and "compound" in f.smoothed
                                else [None] * n)
        else:
            floats.append(np.full((1, len(float_names)), np.nan, np.float32))
            flags.append(np.zeros((1, len(QUALITY_FLAGS)), bool))
            face_ids.append(np.array([-1]))
            tracks.append(np.array([-1]))
            labels = status = blend = smooth = compounds = smooth_compounds = [None]
            gender = None
        strings["source"] += [f.source] * max(n, 1)
        strings["expression"] += labels
        strings["expression_status"] += status
        strings["expression_blend"] += blend
        strings["compound"] += compounds
        if "expression_smooth" in strings:
            strings["expression_smooth"] += smooth
            strings["compound_smooth"] += smooth_compounds
        if "gender_presentation" in strings:
            strings["gender_presentation"] += gender if gender is not None else [None] * max(n, 1)
    block = np.ascontiguousarray(np.concatenate(floats).T)  # one contiguous row per column
    flag_block = np.ascontiguousarray(np.concatenate(flags).T)
    arrays = {name: block[k] for k, name in enumerate(float_names)}
    arrays.update({name: flag_block[k] for k, name in enumerate(FLAG_COLUMNS)})
    arrays.update({
        "frame": np.repeat([f.frame for f in frames], counts).astype(np.int64),
        "time_s": np.repeat([np.nan if f.time_s is None else f.time_s for f in frames], counts).astype(np.float64),
        "face_id": np.concatenate(face_ids).astype(np.int64),
        "track_id": np.concatenate(tracks).astype(np.int64),
        "image_width": np.repeat([f.image_size[1] for f in frames], counts).astype(np.int64),
        "image_height": np.repeat([f.image_size[0] for f in frames], counts).astype(np.int64),
        "face_found": np.repeat([len(f) > 0 for f in frames], counts),
    })
    columns_out = []
    for field in schema:
        values = strings[field.name] if field.name in strings else arrays[field.name]
        columns_out.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(columns_out, schema=schema)


def arrow_to_frame(table) -> pd.DataFrame:
    """A tidy Arrow table as pandas: declared dtypes, strings as objects with None for missing."""
    frame = table.to_pandas()
    for name in table.schema.names:
        if name in STRING_COLUMNS:
            frame[name] = pd.Series(table.column(name).to_numpy(zero_copy_only=False), index=frame.index, dtype=object)
    return frame


def faces_to_frame(frames: Iterable[Faces], landmarks: LandmarkColumns = "2d",
                   empty_rows: bool = True, smoothed: bool = False) -> pd.DataFrame:
    """Tidy DataFrame, one row per face, from one or more `Faces` (see `faces_to_arrow`)."""
    return arrow_to_frame(faces_to_arrow(frames, landmarks, empty_rows, smoothed))


def face_records(faces: Faces, landmarks: LandmarkColumns = "none", empty_rows: bool = True, rules=None) -> list[dict]:
    """One image's or frame's rows as JSON-ready dicts: the table's columns and names (box as `box_x`,
    `box_y`, `box_w`, `box_h`; the `*_smooth` columns when the faces were smoothed; `custom_<name>` with
    `rules`, a `mien.expression.rules.RuleSet`; NaN as None). The one serialiser of rows for the REST API and
    the WebSocket, as for the files."""
    table = faces_to_arrow([faces], landmarks, empty_rows, smoothed=bool(faces.smoothed))
    if rules is not None:
        table = rules.add_to_arrow(table)
    return [{k: None if isinstance(v, float) and v != v else v for k, v in row.items()} for row in table.to_pylist()]


def frame_to_arrow(frame: pd.DataFrame):
    """A tidy DataFrame (any subset of mien's columns, or extra ones) as Arrow with the declared types."""
    import pyarrow as pa

    known = set(columns("3d", smoothed=True, attributes=True))
    fields = []
    for name in frame.columns:
        if name in known:
            fields.append(pa.field(name, arrow_type(name)))
        else:
            fields.append(pa.Schema.from_pandas(frame[[name]], preserve_index=False).field(name))
    # All-missing columns would be typed null, pandas strings large_string: both become plain strings.
    fields = [f.with_type(pa.string()) if pa.types.is_null(f.type) or pa.types.is_large_string(f.type) else f
              for f in fields]
    if frame.attrs:  # pandas metadata (mien keeps DataFrames there) is not the table's: leave it out
        frame = frame.copy(deep=False)
        frame.attrs = {}
    return pa.Table.from_pandas(frame, schema=pa.schema(fields), preserve_index=False)


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
