"""Valence and arousal *derived* from expression probabilities and AU evidence.

These are not outputs of a model trained on valence/arousal labels: each class sits at the
pleasure (valence) and arousal means that Russell & Mehrabian (1977, "Evidence for a three-factor
theory of emotions", J. Research in Personality 11, 273-294) measured for its emotion term on
-1..1 scales; the face's estimate is the probability-weighted mean of those points, nudged by AU
evidence, and clipped to [-1, 1].

| class    | valence | arousal | source                                               |
|----------|---------|---------|------------------------------------------------------|
| neutral  |   0.00  |   0.00  | the scales' midpoint                                 |
| happy    |   0.81  |   0.51  | Russell & Mehrabian (1977) "happy"                   |
| surprise |   0.40  |   0.67  | Russell & Mehrabian (1977) "surprised"               |
| anger    |  -0.51  |   0.59  | Russell & Mehrabian (1977) "angry"                   |
| disgust  |  -0.60  |   0.35  | Russell & Mehrabian (1977) "disgusted"               |
| fear     |  -0.64  |   0.60  | Russell & Mehrabian (1977) "fearful"                 |
| sad      |  -0.63  |  -0.27  | Russell & Mehrabian (1977) "sad"                     |
| contempt |  -0.55  |   0.15  | mien's placement: no "contempt" term in the source;  |
|          |         |         | as unpleasant as anger/disgust, less activated       |

AU nudges, each weighted 0.2:
valence + (AU12 lip corner puller - AU15 lip corner depressor);
arousal + (max(AU05 upper lid raiser, AU26 jaw drop) - AU43 eyes closed).
"""

from __future__ import annotations

import numpy as np

from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS

AU_WEIGHT = 0.2
VALENCE_AROUSAL = {"neutral": (0.0, 0.0), "happy": (0.81, 0.51), "surprise": (0.40, 0.67),
                   "anger": (-0.51, 0.59), "disgust": (-0.60, 0.35), "fear": (-0.64, 0.60),
                   "sad": (-0.63, -0.27), "contempt": (-0.55, 0.15)}
SOURCE = "Russell & Mehrabian (1977) pleasure/arousal means per emotion term; contempt placed by mien"


def circumplex_points() -> np.ndarray:
    """(8, 2) valence, arousal of each class in `EXPRESSIONS` order."""
    return np.array([VALENCE_AROUSAL[name] for name in EXPRESSIONS], np.float32)


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
