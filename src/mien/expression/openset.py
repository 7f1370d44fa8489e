"""Honest outcomes beyond the top class: `unknown`, `uncertain`, and two-expression blends.

- **unknown**: the face's expression fits none of the eight classes. Scored by the energy of the
  logits (logsumexp, Liu et al. 2020): low energy = unlike anything seen in training. The
  threshold keeps 95% of in-distribution FER+ valid faces under the same class prior
  (`benchmarks/openset.py` fits one per prior and reports AUROC on held-out data).
- **uncertain**: the model is not confident (top probability under `UNCERTAIN_BELOW`) or the face's
  numbers are not to be trusted (quality flags: small, strong pose, blurry, occluded, no mesh).
- **blend**: two expressions both strong (second probability at least `BLEND_MIN`), named as in
  compound-expression research (Du et al. 2014; ABAW C-EXPR) where the pair has a name, e.g.
  happy + surprise = "happily surprised".
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import numpy as np

from mien.expression.classes import EXPRESSIONS

UNCERTAIN_BELOW = 0.5
BLEND_MIN = 0.25  # as fitted on FER+ valid (`load_thresholds()["blend_min"]`)
UNTRUSTED_FLAGS = ("small_face", "strong_pose", "blurry", "occluded", "no_mesh")
STATUSES = ("known", "uncertain", "unknown")

# Named compound expressions (Du, Tao & Martinez 2014); key: the two classes, sorted.
_ADVERB = {"happy": "happily", "sad": "sadly", "anger": "angrily", "fear": "fearfully", "disgust": "disgustedly"}
_ADJECTIVE = {"surprise": "surprised", "fear": "fearful", "anger": "angry", "disgust": "disgusted", "sad": "sad"}
_ORDER = ("happy", "sad", "fear", "anger", "disgust", "surprise")  # adverb from the earlier, adjective from the later


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(n,) familiarity score: temperature * logsumexp(logits / temperature); lower = less familiar."""
    z = np.asarray(logits, np.float64) / temperature
    top = z.max(1, keepdims=True)
    return (temperature * (top[:, 0] + np.log(np.exp(z - top).sum(1)))).astype(np.float32)


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """Area under the ROC curve for telling `inside` scores (should be higher) from `outside` ones."""
    inside, outside = np.asarray(inside, np.float64), np.asarray(outside, np.float64)
    scores = np.concatenate([inside, outside])
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[: len(inside)].sum() - len(inside) * (len(inside) + 1) / 2) / (len(inside) * len(outside)))


def blend_name(first: str, second: str) -> str:
    """Name of a two-expression blend: "happily surprised" where research names it, else "sad + neutral"."""
    pair = sorted((first, second), key=lambda c: _ORDER.index(c) if c in _ORDER else 99)
    if pair[0] in _ADVERB and pair[1] in _ADJECTIVE and pair[0] != pair[1]:
        return f"{_ADVERB[pair[0]]} {_ADJECTIVE[pair[1]]}"
    return f"{first} + {second}"


def blends(probs: np.ndarray, min_second: float = BLEND_MIN) -> list[str | None]:
    """Blend name per face where the second most probable class has at least `min_second`, else None."""
    out: list[str | None] = []
    for p in np.asarray(probs):
        if np.isnan(p).any():
            out.append(None)
            continue
        first, second = np.argsort(-p)[:2]
        out.append(blend_name(EXPRESSIONS[first], EXPRESSIONS[second]) if p[second] >= min_second else None)
    return out


def load_thresholds(prior: str = "natural") -> dict:
    """The shipped open-set thresholds for a class prior (`unknown_below`, `blend_min`), fitted under that
    prior by `benchmarks/openset.py --fit`: the prior shifts the logits, so each prior has its own."""
    path = Path(str(files("mien") / "data" / "openset.json"))
    fitted = json.loads(path.read_text())["priors"]
    if prior not in fitted:
        raise ValueError(f"no open-set thresholds for prior {prior!r}; fitted: {', '.join(fitted)}")
    return fitted[prior]


def statuses(probs: np.ndarray, familiarity: np.ndarray, untrusted: np.ndarray,
             unknown_below: float) -> list[str | None]:
    """"unknown", "uncertain" or "known" per face (None where there are no probabilities)."""
    out: list[str | None] = []
    for p, f, bad in zip(np.asarray(probs), np.asarray(familiarity), np.asarray(untrusted)):
        if np.isnan(p).any():
            out.append(None)
        elif f < unknown_below:
            out.append("unknown")
        elif p.max() < UNCERTAIN_BELOW or bad:
            out.append("uncertain")
        else:
            out.append("known")
    return out
