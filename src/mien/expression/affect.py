"""Valence and arousal *derived* from expression probabilities and AU evidence.

These are not outputs of a model trained on valence/arousal labels: each class sits at a point
of Russell's circumplex (valence = x, arousal = y), the face's estimate is the
probability-weighted mean of those points, nudged by AU evidence, and clipped to [-1, 1].

| class    | angle | source                                                  |
|----------|-------|---------------------------------------------------------|
| neutral  |   -   | centre (0, 0)                                           |
| happy    |   8°  | Russell (1980) "happy" 7.8°                             |
| surprise |  70°  | Russell (1980) "astonished" 69.8°                       |
| anger    |  99°  | Russell (1980) "angry" 99.0°                            |
| fear     | 117°  | Russell (1980) "afraid" 116.8°                          |
| disgust  | 135°  | mien's placement (not among Russell's terms)            |
| contempt | 160°  | mien's placement (not among Russell's terms)            |
| sad      | 208°  | Russell (1980) "sad" 207.5°                             |

Points lie at radius 0.8 (prototypes, not extremes). AU nudges, each weighted 0.2:
valence + (AU12 lip corner puller - AU15 lip corner depressor);
arousal + (max(AU05 upper lid raiser, AU26 jaw drop) - AU43 eyes closed).
"""

from __future__ import annotations

import numpy as np

from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS

RADIUS = 0.8
AU_WEIGHT = 0.2
ANGLES_DEG = {"happy": 7.8, "surprise": 69.8, "anger": 99.0, "fear": 116.8, "disgust": 135.0,
              "contempt": 160.0, "sad": 207.5}


def circumplex_points() -> np.ndarray:
    """(8, 2) valence, arousal of each class in `EXPRESSIONS` order."""
    points = np.zeros((len(EXPRESSIONS), 2), np.float32)
    for i, name in enumerate(EXPRESSIONS):
        if name in ANGLES_DEG:
            angle = np.radians(ANGLES_DEG[name])
            points[i] = RADIUS * np.cos(angle), RADIUS * np.sin(angle)
    return points


def valence_arousal(probs: np.ndarray, aus: np.ndarray) -> np.ndarray:
    """(n, 2) derived valence and arousal from (n, 8) probabilities and (n, 20) AU estimates.

    Rows with NaN probabilities stay NaN; NaN AUs contribute nothing.
    """
    probs = np.asarray(probs, np.float32)
    out = probs @ circumplex_points()
    au = np.nan_to_num(np.asarray(aus, np.float32), nan=0.0)
    col = {name: au[:, AU_NAMES.index(name)] for name in ("AU12", "AU15", "AU05", "AU26", "AU43")}
    out[:, 0] += AU_WEIGHT * (col["AU12"] - col["AU15"])
    out[:, 1] += AU_WEIGHT * (np.maximum(col["AU05"], col["AU26"]) - col["AU43"])
    return np.clip(out, -1.0, 1.0)
