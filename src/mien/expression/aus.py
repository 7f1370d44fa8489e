"""Action-unit *estimates* from blendshapes and mesh geometry.

These are not FACS-coded labels: no human coder or AU-trained model is involved. Each AU is a
documented function of MediaPipe's ARKit-style blendshapes (left and right averaged) or of mesh
geometry, giving an intensity in [0, 1]. The table below is the mapping; `README.md` repeats it.

| AU   | name                 | estimate                                                    |
|------|----------------------|-------------------------------------------------------------|
| AU01 | inner brow raiser    | browInnerUp                                                 |
| AU02 | outer brow raiser    | mean(browOuterUpLeft, browOuterUpRight)                     |
| AU04 | brow lowerer         | mean(browDownLeft, browDownRight)                           |
| AU05 | upper lid raiser     | mean(eyeWideLeft, eyeWideRight)                             |
| AU06 | cheek raiser         | max(mean(cheekSquint L/R), mean(eyeSquint L/R))             |
| AU07 | lid tightener        | mean(eyeSquintLeft, eyeSquintRight)                         |
| AU09 | nose wrinkler        | mean(noseSneerLeft, noseSneerRight)                         |
| AU10 | upper lip raiser     | mean(mouthUpperUpLeft, mouthUpperUpRight)                   |
| AU12 | lip corner puller    | mean(mouthSmileLeft, mouthSmileRight)                       |
| AU14 | dimpler              | mean(mouthDimpleLeft, mouthDimpleRight)                     |
| AU15 | lip corner depressor | mean(mouthFrownLeft, mouthFrownRight)                       |
| AU17 | chin raiser          | mouthShrugLower                                             |
| AU20 | lip stretcher        | mean(mouthStretchLeft, mouthStretchRight)                   |
| AU23 | lip tightener        | mean(mouthPressLeft, mouthPressRight) (weak; as AU24)       |
| AU24 | lip pressor          | mean(mouthPressLeft, mouthPressRight)                       |
| AU25 | lips part            | geometry: inner-lip gap / mouth width, 0 at 0, 1 at >= 0.15 |
| AU26 | jaw drop             | jawOpen                                                     |
| AU28 | lip suck             | mean(mouthRollLower, mouthRollUpper)                        |
| AU43 | eyes closed          | geometry: 1 - (eye opening / eye width - 0.05) / 0.17       |
| AU45 | blink                | mean(eyeBlinkLeft, eyeBlinkRight)                           |

One-sided AUs (`SIDE_NAMES`: `AU06_L`, `AU06_R`, `AU12_L`... for AU06, AU12, AU14, AU43, AU45; L and R
are the subject's left and right, as in the blendshape names) keep what the means above erase: a
one-sided smile or dimpler (contempt is AU14 on one side), a wink. AU06_L is max(cheekSquintLeft,
eyeSquintLeft), AU12_L mouthSmileLeft, AU14_L mouthDimpleLeft, AU45_L eyeBlinkLeft, AU43_L the
eye-opening geometry of the left eye alone. The bilateral `AU12` etc. stay the mean of the two sides.

The geometric AUs (AU25, AU43) are ratios of 3-D distances in the mesh (x, y and the mesh's depth
z, on the same scale), so turning or pitching the head does not shrink them as it shrinks their
2-D projections.

AU06: MediaPipe's cheekSquint outputs stay near zero, so the eye squint (the cheek raiser narrows
the eye from below) stands in for it; no AU is computed from another AU (an AU06 from AU12 would
make AU6+AU12 "Duchenne" analyses circular). AU23: mouthPucker is lip puckering (AU18), which on
RAF-CE valid anti-correlates with coded AU23 (AUROC 0.28), so AU23 reads the lip press alone
(AUROC 0.72 -> 0.77), like AU24: the blendshapes do not separate the two; the learned occurrence
probabilities (`AUxx_p`, `mien.expression.au_model`) do. AU43 and AU45 cannot be told apart in one
still image; in video AU45 is the brief version. Measured against FACS coders: `mien eval-aus`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from mien.face.blendshapes import BLENDSHAPE_INDEX

AU_NAMES: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14",
    "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43", "AU45",
)

AU_DESCRIPTIONS: dict[str, str] = {
    "AU01": "inner brow raiser", "AU02": "outer brow raiser", "AU04": "brow lowerer",
    "AU05": "upper lid raiser", "AU06": "cheek raiser", "AU07": "lid tightener",
    "AU09": "nose wrinkler", "AU10": "upper lip raiser", "AU12": "lip corner puller",
    "AU14": "dimpler", "AU15": "lip corner depressor", "AU17": "chin raiser",
    "AU20": "lip stretcher", "AU23": "lip tightener", "AU24": "lip pressor",
    "AU25": "lips part", "AU26": "jaw drop", "AU28": "lip suck", "AU43": "eyes closed",
    "AU45": "blink",
}

# AUs that are a plain mean of blendshapes.
_FROM_BLENDSHAPES: dict[str, tuple[str, ...]] = {
    "AU01": ("browInnerUp",),
    "AU02": ("browOuterUpLeft", "browOuterUpRight"),
    "AU04": ("browDownLeft", "browDownRight"),
    "AU05": ("eyeWideLeft", "eyeWideRight"),
    "AU07": ("eyeSquintLeft", "eyeSquintRight"),
    "AU09": ("noseSneerLeft", "noseSneerRight"),
    "AU10": ("mouthUpperUpLeft", "mouthUpperUpRight"),
    "AU12": ("mouthSmileLeft", "mouthSmileRight"),
    "AU14": ("mouthDimpleLeft", "mouthDimpleRight"),
    "AU15": ("mouthFrownLeft", "mouthFrownRight"),
    "AU17": ("mouthShrugLower",),
    "AU20": ("mouthStretchLeft", "mouthStretchRight"),
    "AU23": ("mouthPressLeft", "mouthPressRight"),
    "AU24": ("mouthPressLeft", "mouthPressRight"),
    "AU26": ("jawOpen",),
    "AU28": ("mouthRollLower", "mouthRollUpper"),
    "AU45": ("eyeBlinkLeft", "eyeBlinkRight"),
}

# Mesh indices (MediaPipe canonical face mesh).
_INNER_LIP_TOP, _INNER_LIP_BOTTOM = 13, 14
_MOUTH_CORNERS = (61, 291)
# (outer corner, inner corner, upper lid, lower lid) for the subject's right and left eye.
_EYES = ((33, 133, 159, 145), (263, 362, 386, 374))


@lru_cache(maxsize=1)
def _mean_weights() -> np.ndarray:
    """(52, 20) weights making each `_FROM_BLENDSHAPES` AU the mean of its blendshapes (zero elsewhere)."""
    weights = np.zeros((len(BLENDSHAPE_INDEX), len(AU_NAMES)), np.float32)
    for au, names in _FROM_BLENDSHAPES.items():
        for name in names:
            weights[BLENDSHAPE_INDEX[name], AU_NAMES.index(au)] = 1.0 / len(names)
    return weights


def _mean_of(blendshapes: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    return blendshapes[:, [BLENDSHAPE_INDEX[n] for n in names]].mean(axis=1)


def _dist(points: np.ndarray, a: int, b: int) -> np.ndarray:
    """(n,) 3-D distance between two mesh points (pose-invariant, unlike the 2-D one)."""
    return np.linalg.norm(points[:, a, :3] - points[:, b, :3], axis=1)


def lips_apart(landmarks: np.ndarray) -> np.ndarray:
    """(n,) inner-lip gap divided by mouth width."""
    width = _dist(landmarks, *_MOUTH_CORNERS)
    return _dist(landmarks, _INNER_LIP_TOP, _INNER_LIP_BOTTOM) / np.maximum(width, 1e-6)


def eye_openings(landmarks: np.ndarray) -> np.ndarray:
    """(n, 2) eyelid distance divided by eye width of the subject's right and left eye."""
    return np.stack([_dist(landmarks, top, bottom) / np.maximum(_dist(landmarks, outer, inner), 1e-6)
                     for outer, inner, top, bottom in _EYES], axis=1)


def eye_opening(landmarks: np.ndarray) -> np.ndarray:
    """(n,) eyelid distance divided by eye width, averaged over both eyes."""
    return eye_openings(landmarks).mean(axis=1)


def _eyes_closed(opening: np.ndarray) -> np.ndarray:
    return 1.0 - (opening - 0.05) / 0.17


def estimate_aus(blendshapes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(n, 20) AU intensity estimates in [0, 1], columns ordered as AU_NAMES.

    Args:
        blendshapes: (n, 52) scores ordered as BLENDSHAPE_NAMES.
        landmarks: (n, 478, 3) mesh in pixels (only ratios are used, so any scale works).
    """
    blendshapes = np.asarray(blendshapes, dtype=np.float32)
    landmarks = np.asarray(landmarks, dtype=np.float32)
    out = np.zeros((len(blendshapes), len(AU_NAMES)), dtype=np.float32)
    col = {name: i for i, name in enumerate(AU_NAMES)}
    out[:] = np.einsum("nb,ba->na", blendshapes, _mean_weights())  # every plain mean at once
    squint = _mean_of(blendshapes, ("eyeSquintLeft", "eyeSquintRight"))
    cheek = _mean_of(blendshapes, ("cheekSquintLeft", "cheekSquintRight"))
    out[:, col["AU06"]] = np.maximum(cheek, squint)
    out[:, col["AU25"]] = lips_apart(landmarks) / 0.15
    out[:, col["AU43"]] = _eyes_closed(eye_opening(landmarks))
    return np.clip(out, 0.0, 1.0)


SIDED_AUS: tuple[str, ...] = ("AU06", "AU12", "AU14", "AU43", "AU45")
SIDE_NAMES: tuple[str, ...] = tuple(f"{au}_{side}" for au in SIDED_AUS for side in "LR")


def estimate_sides(blendshapes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(n, 10) one-sided AU estimates in [0, 1], columns ordered as SIDE_NAMES (subject's left, right)."""
    b = np.asarray(blendshapes, dtype=np.float32)
    shape = lambda name: b[:, BLENDSHAPE_INDEX[name]]  # noqa: E731
    closed = _eyes_closed(eye_openings(np.asarray(landmarks, dtype=np.float32)))  # (right, left)
    columns = []
    for side, word, eye in (("L", "Left", 1), ("R", "Right", 0)):
        columns.append({
            "AU06": np.maximum(shape(f"cheekSquint{word}"), shape(f"eyeSquint{word}")),
            "AU12": shape(f"mouthSmile{word}"), "AU14": shape(f"mouthDimple{word}"),
            "AU43": closed[:, eye], "AU45": shape(f"eyeBlink{word}"),
        })
    left, right = columns
    out = np.stack([(left if name.endswith("_L") else right)[name[:4]] for name in SIDE_NAMES], axis=1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
