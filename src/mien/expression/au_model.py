"""Learned AU occurrence: calibrated probabilities that a FACS coder would mark each AU present.

A small multi-task network (an ensemble of three one-hidden-layer MLPs, 20 sigmoid outputs, run in
numpy) over what mien already computes for every face:

- the 52 blendshapes, 78 mesh points in the face's aligned frame (in-plane rotation and scale
  removed) and the 20 rule-based AU estimates (geometry and muscle-like shape scores);
- the expression network's 8 log-probabilities (its own logits, without the class prior): the
  appearance evidence the network learned from hundreds of thousands of faces;
- 64 principal components of a HOG descriptor of the 112 px aligned grey face (wrinkles and
  furrows: nose wrinkler, cheek raiser, lip corner depressor), as OpenFace's AU detectors use;
- 96 principal components of the expression network's regional features (`features` output: its third
  stage averaged over 3 x 3 overlapping regions of the face, `mien.train.quantize.add_feature_output`):
  local appearance learned from millions of faces (RAF-CE valid mean AUROC 0.883 -> 0.904).

Fitted on RAF-CE train by `python -m mien.train.aus` (torch; the weights ship as
`models/weights/au_occurrence.npz`, checked by SHA-256), each AU's occurrence threshold (`AUxx_c`)
F1-optimal on RAF-CE valid. The expression logits and features are inputs, so the AU model is refitted whenever
the expression model changes. Without them (`expression=False`, or a model without the `features` output) or
without an aligned crop, those inputs sit at their training mean: the outputs stay defined but lose that
evidence. About 0.3 ms per face.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from mien.expression.aus import AU_NAMES, estimate_aus

MESH_POINTS = tuple(range(0, 468, 6))  # a spread subset of the face mesh (78 points)
_ALIGN_SIDE = 112
N_GEOMETRY = 52 + 2 * len(MESH_POINTS) + len(AU_NAMES)
N_EXPRESSION = 8
N_HOG = 64  # principal components of the HOG descriptor
# HOG of the aligned grey face: 16 px blocks every 8 px, 8 px cells, 9 orientations (6,084 values).
_HOG = ((_ALIGN_SIDE, _ALIGN_SIDE), (16, 16), (8, 8), (8, 8), 9)


def geometry_features(blendshapes: np.ndarray, landmarks: np.ndarray, estimates: np.ndarray | None = None,
                      units: np.ndarray | None = None) -> np.ndarray:
    """(n, 228) blendshapes, aligned mesh points and rule-based AU estimates (NaN rows without a mesh);
    `estimates` (`estimate_aus`) and `units` ((n, 2, 3) `mien.face.align.unit_matrix`) of the same faces
    when the caller has them already."""
    from mien.face.align import align_matrix

    blendshapes = np.asarray(blendshapes, np.float32).reshape(-1, 52)
    landmarks = np.asarray(landmarks, np.float32).reshape(-1, 478, 3)
    n = len(blendshapes)
    points = np.full((n, 2 * len(MESH_POINTS)), np.nan, np.float32)
    ok = ~(np.isnan(blendshapes).any(1) | np.isnan(landmarks).any((1, 2)))
    for i in np.flatnonzero(ok):
        try:
            matrix = align_matrix(landmarks[i], _ALIGN_SIDE, 0.0, unit=None if units is None else units[i])
        except ValueError:
            ok[i] = False
            continue
        pts = landmarks[i, MESH_POINTS, :2] @ matrix[:, :2].T + matrix[:, 2]
        points[i] = pts.ravel() / _ALIGN_SIDE
    rules = np.full((n, len(AU_NAMES)), np.nan, np.float32)
    if ok.any():
        rules[ok] = estimate_aus(blendshapes[ok], landmarks[ok]) if estimates is None else estimates[ok]
    out = np.concatenate([blendshapes, points, rules], 1)
    out[~ok] = np.nan
    return out


@lru_cache(maxsize=None)
def _hog_descriptor() -> cv2.HOGDescriptor:
    return cv2.HOGDescriptor(*_HOG)


def hog_features(aligned: np.ndarray) -> np.ndarray:
    """(n, 6084) HOG descriptors of (n, 112, 112, 3) uint8 RGB aligned face crops."""
    descriptor = _hog_descriptor()
    out = []
    for crop in aligned:
        if crop.shape[0] != _ALIGN_SIDE:  # another --align-size: the descriptor is defined at 112 px
            crop = cv2.resize(crop, (_ALIGN_SIDE, _ALIGN_SIDE), interpolation=cv2.INTER_AREA)
        out.append(descriptor.compute(cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)).ravel())
    return np.asarray(out, np.float32).reshape(len(aligned), -1)


def log_probabilities(logits: np.ndarray) -> np.ndarray:
    """(n, 8) log-softmax of expression logits."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(1, keepdims=True)
    return (z - np.log(np.exp(z).sum(1, keepdims=True))).astype(np.float32)


@lru_cache(maxsize=1)
def load_model() -> dict:
    """The shipped AU occurrence model, verified by SHA-256 (`ModelNotFoundError` naming the file when it
    is missing or altered)."""
    from mien.models import resolve

    with np.load(resolve("au_occurrence")) as data:
        model = {k: data[k] for k in data.files}
    model["threshold"] = dict(zip(AU_NAMES, model["thresholds"].tolist()))
    return model


def model_inputs(model: dict, blendshapes: np.ndarray, landmarks: np.ndarray, aligned: np.ndarray | None = None,
                 logits: np.ndarray | None = None, estimates: np.ndarray | None = None,
                 units: np.ndarray | None = None, features: np.ndarray | None = None) -> np.ndarray:
    """(n, D) standardised network inputs; rows without a mesh are NaN."""
    geometry = geometry_features(blendshapes, landmarks, estimates, units)
    n = len(geometry)
    mean, scale = model["mean"], model["scale"]
    expression = (log_probabilities(logits) if logits is not None
                  else np.tile(mean[N_GEOMETRY:N_GEOMETRY + N_EXPRESSION], (n, 1)))
    if aligned is not None and len(aligned) == n:
        hog = _project(hog_features(aligned), model["hog_mean"], model["hog_basis"])
    else:
        hog = np.tile(mean[N_GEOMETRY + N_EXPRESSION:][:N_HOG], (n, 1))
    parts = [geometry, expression, hog]
    if "feature_basis" in model:
        if features is not None and len(features) == n and features.shape[1] == len(model["feature_mean"]):
            parts.append(_project(np.asarray(features, np.float32), model["feature_mean"], model["feature_basis"]))
        else:
            parts.append(np.tile(mean[N_GEOMETRY + N_EXPRESSION + N_HOG:], (n, 1)))
    x = np.concatenate(parts, 1)
    return ((x - mean) / scale).astype(np.float32)


def _project(rows: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(rows - mean) @ basis, one matrix-vector product per row: a (n, 6084) x (6084, 64) product goes to
    OpenBLAS's threaded gemm, which stalls for ~100 ms when another process keeps the other core busy."""
    return np.array([row @ basis for row in rows - mean], np.float32).reshape(len(rows), basis.shape[1])


def network(model: dict, z: np.ndarray) -> np.ndarray:
    """(n, 20) ensemble-mean sigmoid outputs for standardised inputs `z`."""
    hidden = np.maximum(np.einsum("nd,edh->enh", z, model["w1"]) + model["b1"][:, None], 0.0)
    logits = np.einsum("enh,ehk->enk", hidden, model["w2"]) + model["b2"][:, None]
    return (1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))).mean(0).astype(np.float32)  # no exp overflow


def occurrence(blendshapes: np.ndarray, landmarks: np.ndarray, aligned: np.ndarray | None = None,
               logits: np.ndarray | None = None, model: dict | None = None,
               estimates: np.ndarray | None = None, units: np.ndarray | None = None,
               features: np.ndarray | None = None) -> np.ndarray:
    """(n, 20) probability that each AU of `AU_NAMES` is present (NaN rows without a mesh).

    Args:
        blendshapes, landmarks: (n, 52) and (n, 478, 3) as the mesh gives them.
        aligned: (n, 112, 112, 3) uint8 aligned crops (`mien.face.align.align_face`), or None.
        logits: (n, 8) the expression network's logits without the class prior, or None.
        estimates: (n, 20) `estimate_aus` of these faces, if already computed.
        units: (n, 2, 3) their `mien.face.align.unit_matrix`, if already computed.
        features: (n, D) the expression network's `features` output for these faces, or None.
    """
    model = model or load_model()
    n = len(np.asarray(blendshapes).reshape(-1, 52))
    if n == 0:
        return np.full((n, len(AU_NAMES)), np.nan, np.float32)
    z = model_inputs(model, blendshapes, landmarks, aligned, logits, estimates, units, features)
    out = np.full((n, len(AU_NAMES)), np.nan, np.float32)
    ok = ~np.isnan(z).any(1)
    if ok.any():
        out[ok] = network(model, z[ok])
    return out


def thresholds() -> np.ndarray:
    """(20,) occurrence threshold per AU (F1-optimal on RAF-CE valid)."""
    return load_model()["thresholds"].astype(np.float32)
