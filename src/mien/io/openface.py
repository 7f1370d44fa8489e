"""OpenFace 2.x in and out: `to_openface` writes mien's table under OpenFace's conventions
(`--format openface`), `read_openface` reads an OpenFace FeatureExtraction / FaceLandmarkImg CSV into
mien's names so `df.mien` analyses and plots work on existing OpenFace data.

The conventions, from OpenFace's "Output Format" wiki page: camera coordinates with x to the image's
right, y down and z away from the camera; `pose_Rx/Ry/Rz` rotations about those axes in radians
(pitch, yaw, roll); `gaze_angle_x/y` the gaze direction in camera coordinates in radians (x grows
towards the image's right, y downwards; both near 0 looking straight at the camera); `AUxx_r` intensity
on the 0-5 scale and `AUxx_c` presence (0/1); `x_i`, `y_i` the 68 iBUG landmarks in pixels.

mien's own conventions (`mien.face.pose`): yaw positive towards the image's right, pitch positive
chin up, roll positive clockwise in the image, gaze relative to the head. So, both ways:
`pose_Rx = -pitch`, `pose_Ry = -yaw`, `pose_Rz = roll`; camera gaze = head pose + gaze relative to
the head (a first-order composition, good to a few degrees within +-30 degrees).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mien.expression.aus import AU_NAMES

# The AUs OpenFace 2.x codes (`_r` for all but AU28, `_c` for all).
OPENFACE_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
                "AU20", "AU23", "AU25", "AU26", "AU28", "AU45")

# MediaPipe face-mesh points closest to the 68 iBUG / Multi-PIE landmarks OpenFace writes as x_0..x_67:
# jaw 0-16 (from the image's left), brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59, inner 60-67.
MESH_TO_IBUG68 = (
    127, 234, 93, 132, 58, 172, 136, 150, 152, 379, 365, 397, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)

# What `--format openface` cannot give as OpenFace does; recorded in the output's provenance.
OPENFACE_NOTES = (
    "pose_Rx/Ry/Rz and gaze_angle_x/y follow OpenFace 2.x signs (camera coordinates: x right, y down, z away; "
    "radians); mien's pose and gaze are converted (pose_Rx = -pitch, pose_Ry = -yaw, pose_Rz = roll; gaze = head "
    "pose + eye gaze, first order).",
    "AUxx_r = mien's AU intensity estimate (0-1) x 5: a linear rescale to OpenFace's 0-5 range, not FACS "
    "intensity coding (A-E). AUxx_c = mien's calibrated occurrence probability AUxx_p at its shipped threshold.",
    "x_i, y_i are the 68 iBUG points taken from the nearest MediaPipe mesh points (pixels, upright original image).",
    "Not written: pose_Tx/Ty/Tz and X_i/Y_i/Z_i (mien has no metric camera model), gaze_0_*/gaze_1_* per-eye "
    "vectors (mien measures both eyes together), p_* shape parameters, eye_lmk_* eye landmarks.",
)


def camera_gaze(pose_yaw: np.ndarray, pose_pitch: np.ndarray, gaze_yaw: np.ndarray,
                gaze_pitch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenFace's (gaze_angle_x, gaze_angle_y) in radians from mien's pose and head-relative gaze (degrees)."""
    return np.radians(pose_yaw + gaze_yaw), -np.radians(pose_pitch + gaze_pitch)


def to_openface(frame: pd.DataFrame) -> pd.DataFrame:
    """mien's table under OpenFace 2.x column names and conventions (see the module docs and
    `OPENFACE_NOTES`). Other mien columns (expressions, blendshapes, flags, boxes) keep their names."""
    from mien.expression.au_model import thresholds

    gaze_x, gaze_y = camera_gaze(frame["pose_yaw"], frame["pose_pitch"], frame["gaze_yaw"], frame["gaze_pitch"])
    cols: dict[str, object] = {
        "input": frame["source"], "frame": frame["frame"], "face_id": frame["face_id"],
        "timestamp": frame["time_s"].fillna(0.0),
        "confidence": frame["box_score"], "success": frame["face_found"].astype(int),
        "gaze_angle_x": gaze_x, "gaze_angle_y": gaze_y,
        "pose_Rx": -np.radians(frame["pose_pitch"]), "pose_Ry": -np.radians(frame["pose_yaw"]),
        "pose_Rz": np.radians(frame["pose_roll"]),
    }
    if "lm_x_0" in frame.columns:
        for axis in "xy":
            cols.update({f"{axis}_{k}": frame[f"lm_{axis}_{i}"] for k, i in enumerate(MESH_TO_IBUG68)})
    limits = dict(zip(AU_NAMES, thresholds()))
    cols.update({f"{au}_r": (frame[au] * 5.0).astype(np.float32) for au in OPENFACE_AUS if au != "AU28"})
    cols.update({f"{au}_c": ((frame[f"{au}_p"] >= limits[au]) if f"{au}_p" in frame.columns
                             else (frame[au] >= 0.3)).astype(int) for au in OPENFACE_AUS})
    keep = [c for c in frame.columns if c.startswith(("expr_", "bs_", "flag_", "box_"))
            or c in ("track_id", "sharpness", "expression", "expression_confidence", "expression_status",
                     "expression_blend", "expression_familiarity", "valence", "arousal", "compound",
                     "compound_confidence")]
    cols.update({c: frame[c] for c in keep})
    return pd.DataFrame(cols)


def read_openface(path: str | Path) -> pd.DataFrame:
    """An OpenFace 2.x CSV (FeatureExtraction, FaceLandmarkImg, FaceLandmarkVidMulti) in mien's names.

    Maps `frame`, `timestamp` -> `time_s`, `face_id` (also as `track_id`), `confidence` -> `box_score`,
    `success` -> `face_found`, `pose_R*` -> `pose_yaw/pitch/roll` (degrees, mien's signs), `gaze_angle_*`
    -> `gaze_yaw/pitch` relative to the head, `AUxx_r` / 5 -> `AUxx` (0-1), and a box from the 68
    landmarks' extent. `AUxx_c`, the landmarks and every other OpenFace column are kept under their own
    names. `source` is the file's name (or its `input` column). Column names are stripped of the
    spaces OpenFace puts after each comma.
    """
    path = Path(path)
    raw = pd.read_csv(path, skipinitialspace=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in ("frame", "confidence", "success") if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: not an OpenFace 2.x CSV (no {', '.join(missing)} column)")
    n = len(raw)
    out: dict[str, object] = {"source": raw["input"].astype(str) if "input" in raw.columns else [path.name] * n,
                              "frame": raw["frame"].astype(np.int64)}
    out["time_s"] = raw["timestamp"].astype(float) if "timestamp" in raw.columns else np.full(n, np.nan)
    face = raw["face_id"].to_numpy(np.int64) if "face_id" in raw.columns else np.zeros(n, np.int64)
    out["face_id"], out["track_id"] = face, face.copy()
    out["face_found"] = raw["success"].astype(int).astype(bool)
    out["box_score"] = raw["confidence"].astype(float)
    if {"x_0", "y_0"} <= set(raw.columns):
        xs = raw[[f"x_{i}" for i in range(68) if f"x_{i}" in raw.columns]].to_numpy(float)
        ys = raw[[f"y_{i}" for i in range(68) if f"y_{i}" in raw.columns]].to_numpy(float)
        out["box_x"], out["box_y"] = xs.min(1), ys.min(1)
        out["box_w"], out["box_h"] = xs.max(1) - xs.min(1), ys.max(1) - ys.min(1)
    if {"pose_Rx", "pose_Ry", "pose_Rz"} <= set(raw.columns):
        yaw, pitch = -np.degrees(raw["pose_Ry"].to_numpy(float)), -np.degrees(raw["pose_Rx"].to_numpy(float))
        out["pose_yaw"], out["pose_pitch"] = yaw, pitch
        out["pose_roll"] = np.degrees(raw["pose_Rz"].to_numpy(float))
        if {"gaze_angle_x", "gaze_angle_y"} <= set(raw.columns):
            out["gaze_yaw"] = np.degrees(raw["gaze_angle_x"].to_numpy(float)) - yaw
            out["gaze_pitch"] = -np.degrees(raw["gaze_angle_y"].to_numpy(float)) - pitch
    for au in AU_NAMES:
        if f"{au}_r" in raw.columns:
            out[au] = (raw[f"{au}_r"].astype(float) / 5.0).clip(0.0, 1.0)
    mapped = {"frame", "timestamp", "face_id", "confidence", "success", "input", "pose_Rx", "pose_Ry", "pose_Rz",
              "gaze_angle_x", "gaze_angle_y"} | {f"{au}_r" for au in AU_NAMES}
    out.update({c: raw[c] for c in raw.columns if c not in mapped and c not in out})
    out = pd.DataFrame(out, index=raw.index)
    out.attrs["provenance"] = {"kind": "openface", "source": str(path)}
    return out
