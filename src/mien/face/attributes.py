"""Apparent age and gender presentation, from dlib-models' networks (CC0) run with onnxruntime.

Both networks expect a dlib "face chip": the face rotated upright and scaled so that eyes, nose
and mouth sit at fixed places. mien makes the chip from its own mesh: a similarity transform
that puts eight mesh points (eye corners, nose, mouth corners) where they sit on average in
UTKFace's dlib-aligned chips (`TEMPLATE`, measured on the UTKFace train split).

These are *apparent* attributes from appearance: not a person's age, sex or gender identity.
Off by default; see the model cards for the measured errors per group.
"""

from __future__ import annotations

import json
from importlib.resources import files

import cv2
import numpy as np

from mien.models.registry import resolve

# Mesh points of the chip template: eye corners (outer, inner; both eyes), nose tip and bridge,
# mouth corners.
TEMPLATE_POINTS = (33, 133, 362, 263, 1, 168, 61, 291)
# Where those points sit in a UTKFace chip, as a fraction of its side (x, y), written by
# `python benchmarks/attributes.py --fit-template` (means over the UTKFace train split).
_FITTED = json.loads((files("mien") / "data" / "attributes.json").read_text())
TEMPLATE = np.array(_FITTED["template"], np.float32)

AGE_BINS = np.array([0.25] + list(range(1, 81)), np.float32)
_MEAN = np.array([122.781998, 117.000999, 104.297997], np.float32)
# The age interval is a split-conformal 80% interval (Papadopoulos et al. 2002; Lei et al. 2018):
# estimate +- q * (estimate + 5) years, q the 80th percentile of |error| / (estimate + 5) on UTKFace
# valid, so it widens with age as the errors do. (The network's own distribution is far too narrow:
# its 10-90th percentiles held the true age for only ~38% of held-out faces.)
AGE_INTERVAL_Q = float(_FITTED.get("age_interval_q", 0.25))
AGE_OFFSET = 5.0


def chip_transform(landmarks: np.ndarray, size: int, template: np.ndarray = TEMPLATE) -> np.ndarray:
    """2x3 similarity transform from image pixels to a `size` x `size` face chip."""
    source = landmarks[list(TEMPLATE_POINTS), :2].astype(np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(source, template * size, method=cv2.LMEDS)
    if matrix is None:  # degenerate points: fall back to the eyes-and-mouth box
        matrix, _ = cv2.estimateAffinePartial2D(source, template * size)
    return matrix


def face_chip(rgb: np.ndarray, landmarks: np.ndarray, size: int, work_size: int = 192) -> np.ndarray:
    """(size, size, 3) uint8 RGB face chip: warped at `work_size`, then shrunk by area averaging
    (warping straight to 32 px would alias)."""
    work = max(size, work_size)
    chip = cv2.warpAffine(rgb, chip_transform(landmarks, work), (work, work), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return chip if work == size else cv2.resize(chip, (size, size), interpolation=cv2.INTER_AREA)


def attribute_chips(rgb: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The age network's 64x64 and the gender network's 32x32 chip of one face (both from one 192 px chip)."""
    large = face_chip(rgb, landmarks, 192)
    return (cv2.resize(large, (64, 64), interpolation=cv2.INTER_AREA),
            cv2.resize(large, (32, 32), interpolation=cv2.INTER_AREA))


def interval_holds(age: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Whether whole-year labelled ages lie in the intervals (half a year of slack for rounding)."""
    return (age >= low - 0.5) & (age <= high + 0.5)


def _blob(chips: np.ndarray) -> np.ndarray:
    return ((chips.astype(np.float32) - _MEAN) / 256.0).transpose(0, 3, 1, 2).copy()


def age_interval(estimate: np.ndarray, q: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the 80% interval around apparent-age estimates (years)."""
    half = (AGE_INTERVAL_Q if q is None else q) * (np.asarray(estimate) + AGE_OFFSET)
    return np.maximum(estimate - half, 0.0), estimate + half


def age_summary(probabilities: np.ndarray, q: float | None = None) -> np.ndarray:
    """(n, 3): expected age of each (n, 81) age distribution and its 80% interval (low, high)."""
    probabilities = probabilities / probabilities.sum(1, keepdims=True)
    mean = probabilities @ AGE_BINS
    low, high = age_interval(mean, q)
    return np.stack([mean, low, high], 1).astype(np.float32)


class AttributeEstimator:
    """Apparent age (years, with an 80% interval) and gender presentation (probability of "female"
    as the network's label reads) per face.

    >>> estimator = AttributeEstimator()
    >>> age, p_female = estimator.estimate(rgb, faces.landmarks)
    """

    def __init__(self, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self._age = ort.InferenceSession(str(resolve("age")), options, providers=providers)
        self._gender = ort.InferenceSession(str(resolve("gender")), options, providers=providers)

    def age_probabilities(self, chips64: np.ndarray) -> np.ndarray:
        return self._age.run(None, {"images": _blob(chips64)})[0]

    def female_probability(self, chips32: np.ndarray) -> np.ndarray:
        return self._gender.run(None, {"images": _blob(chips32)})[0][:, 0]

    def estimate(self, rgb: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For (n, 478, 3) landmarks in `rgb`: ((n, 3) age mean/low/high, (n,) P(female)); NaN rows
        where a face has no mesh."""
        n = len(landmarks)
        ages = np.full((n, 3), np.nan, np.float32)
        female = np.full(n, np.nan, np.float32)
        ok = [i for i in range(n) if not np.isnan(landmarks[i]).any()]
        if ok:
            pairs = [attribute_chips(rgb, landmarks[i]) for i in ok]
            chips64 = np.stack([p[0] for p in pairs])
            chips32 = np.stack([p[1] for p in pairs])
            ages[ok] = age_summary(self.age_probabilities(chips64))
            female[ok] = self.female_probability(chips32)
        return ages, female
