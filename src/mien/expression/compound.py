"""The `compound` reading: which of RAF-CE's 14 compound expressions ("happily surprised", "sadly angry"...) an
emotional face shows.

A multinomial logistic regression over the expression network's log-probabilities (without the class prior, so
every `--prior` gives the same reading) and the 20 AU occurrence probabilities, fitted on RAF-CE train
(`python -m mien.train.compound`). On RAF-CE valid it names the coded compound first more often than the built-in
rule set `--expressions compound` does (`benchmarks/compound_rafce.py`); the rules stay the explainable layer.
RAF-CE holds only compound faces, so the reading presumes an emotional face: a face whose most likely basic
expression is neutral has none (NaN).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from mien.expression.classes import COMPOUNDS, EXPRESSIONS

_NEUTRAL = EXPRESSIONS.index("neutral")
_MIN_SPREAD = 0.05


def features(network_logits: np.ndarray, au_prob: np.ndarray) -> np.ndarray:
    """(n, 28) inputs: log-softmax of the prior-free logits (n, 8) and the AU probabilities (n, 20)."""
    logits = np.asarray(network_logits, np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return np.concatenate([log_probs, np.asarray(au_prob, np.float64)], 1)


def fit(x: np.ndarray, y: np.ndarray, classes: int, l2: float, steps: int = 3000) -> dict[str, np.ndarray]:
    """Multinomial logistic regression by full-batch gradient descent on standardised inputs; its parameters."""
    # An input nearly constant in training (AU45_p on RAF-CE's still photos) would be blown up by its tiny spread on
    # faces where it varies: spreads below a floor count as the floor.
    mean, std = x.mean(0), np.maximum(x.std(0), _MIN_SPREAD)
    z = (x - mean) / std
    weights, bias, onehot = np.zeros((z.shape[1], classes)), np.zeros(classes), np.eye(classes)[y]
    for _ in range(steps):
        p = _softmax(z @ weights + bias)
        grad = (p - onehot) / len(y)
        weights -= 0.5 * (z.T @ grad + l2 * weights)
        bias -= 0.5 * grad.sum(0)
    return {"mean": mean, "std": std, "weights": weights, "bias": bias}


def probabilities(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """(n, classes) probabilities of the model `params` (from `fit`) for inputs `x` (from `features`)."""
    return _softmax(((x - params["mean"]) / params["std"]) @ params["weights"] + params["bias"])


def _softmax(logits: np.ndarray) -> np.ndarray:
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


@lru_cache(maxsize=1)
def load_model() -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """The shipped model (registry name `compound`): its compound names and parameters."""
    from mien.models import resolve

    with np.load(resolve("compound")) as data:
        names = tuple(str(n) for n in data["names"])
        if names != COMPOUNDS:
            raise ValueError(f"compound.npz names {names}, not mien's COMPOUNDS; refit it (python -m mien.train.compound)")
        return names, {k: data[k].astype(np.float64) for k in ("mean", "std", "weights", "bias")}


def read(network_logits: np.ndarray, au_prob: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """(n, 14) compound probabilities of faces (float32; NaN rows where the face reads neutral or has no reading)."""
    names, params = load_model()
    out = np.full((len(au_prob), len(names)), np.nan, np.float32)
    with np.errstate(invalid="ignore"):
        emotional = ~np.isnan(expression).any(1) & (np.nan_to_num(expression).argmax(1) != _NEUTRAL)
    emotional &= ~np.isnan(au_prob).any(1) & ~np.isnan(network_logits).any(1)
    if emotional.any():
        out[emotional] = probabilities(params, features(network_logits[emotional], au_prob[emotional]))
    return out
