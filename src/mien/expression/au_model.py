"""Learned AU occurrence: calibrated probabilities that a FACS coder would mark each AU present.

One logistic regression per AU (`AU_NAMES`) over features mien already computes for every face: the
52 blendshapes, 78 mesh points in the face's aligned (in-plane rotation and scale removed) frame,
and the 20 rule-based AU estimates. Fitted on RAF-CE train by `python -m mien.train.aus`, without
class weights, so the outputs are probabilities under RAF-CE's AU frequencies; each AU's occurrence
threshold (`AUxx_c`) maximises F1 on RAF-CE valid. The weights ship as `mien/data/au_occurrence.json`.
About 0.1 ms per face.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files

import numpy as np

from mien.expression.aus import AU_NAMES, estimate_aus

MESH_POINTS = tuple(range(0, 468, 6))  # a spread subset of the face mesh (78 points)
_ALIGN_SIDE = 112.0


def features(blendshapes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(n, 52 + 156 + 20) float32 features of faces with a mesh (rows with NaN input give NaN rows)."""
    from mien.face.align import align_matrix

    blendshapes = np.asarray(blendshapes, np.float32).reshape(-1, 52)
    landmarks = np.asarray(landmarks, np.float32).reshape(-1, 478, 3)
    n = len(blendshapes)
    points = np.full((n, 2 * len(MESH_POINTS)), np.nan, np.float32)
    ok = ~(np.isnan(blendshapes).any(1) | np.isnan(landmarks).any((1, 2)))
    for i in np.flatnonzero(ok):
        try:
            matrix = align_matrix(landmarks[i], int(_ALIGN_SIDE), 0.0)
        except ValueError:
            ok[i] = False
            continue
        pts = landmarks[i, MESH_POINTS, :2] @ matrix[:, :2].T + matrix[:, 2]
        points[i] = pts.ravel() / _ALIGN_SIDE
    rules = np.full((n, len(AU_NAMES)), np.nan, np.float32)
    if ok.any():
        rules[ok] = estimate_aus(blendshapes[ok], landmarks[ok])
    out = np.concatenate([blendshapes, points, rules], 1)
    out[~ok] = np.nan
    return out


@lru_cache(maxsize=1)
def load_model() -> dict | None:
    """The shipped AU occurrence model, or None if this install has none."""
    path = files("mien") / "data" / "au_occurrence.json"
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    raw["weights"] = np.asarray(raw["weights"], np.float32)  # (20, n_features)
    raw["bias"] = np.asarray(raw["bias"], np.float32)
    raw["mean"] = np.asarray(raw["mean"], np.float32)
    raw["scale"] = np.asarray(raw["scale"], np.float32)
    raw["thresholds"] = np.asarray([raw["threshold"][au] for au in AU_NAMES], np.float32)
    return raw


def occurrence(blendshapes: np.ndarray, landmarks: np.ndarray, model: dict | None = None) -> np.ndarray:
    """(n, 20) probability that each AU of `AU_NAMES` is present (NaN rows without a mesh)."""
    model = model or load_model()
    x = features(blendshapes, landmarks)
    if model is None:
        return np.full((len(x), len(AU_NAMES)), np.nan, np.float32)
    z = ((x - model["mean"]) / model["scale"]) @ model["weights"].T + model["bias"]
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def thresholds() -> np.ndarray:
    """(20,) occurrence threshold per AU (F1-optimal on RAF-CE valid); 0.5 without a model."""
    model = load_model()
    return model["thresholds"] if model is not None else np.full(len(AU_NAMES), 0.5, np.float32)
