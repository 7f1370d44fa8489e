"""The `compound` reading: which of RAF-CE's 14 compound expressions ("happily surprised", "sadly angry"...) an
emotional face shows.

A multinomial logistic regression over the expression network's log-probabilities (without the class prior, so
every `--prior` gives the same reading) and the 20 AU occurrence probabilities, fitted on RAF-CE train
(`python -m mien.train.compound`). On RAF-CE valid it names the coded compound first more often than the built-in
rule set `--expressions compound` does (`benchmarks/compound_rafce.py`); the rules stay the explainable layer.
A face whose most likely basic expression is neutral has no reading (NaN). An emotional face may still show one
basic expression rather than a compound: a second logistic regression over the same inputs (the gate), fitted on
RAF-CE train (compound) against RAF-DB's held-out basic faces (`rafdb-valid`), gives the probability that it shows
a compound at all. The 14 probabilities are joint, P(compound) x P(this compound | compound), so a row sums to
P(compound); the `compound` column names one only where that is at least 0.5 (`named`). How common compounds are
is a prior, as for the basic expressions: among RAF-DB's emotional faces (3,954 compound, 12,135 basic and not
neutral, Li & Deng 2019) a quarter are compound, the default; `prior="balanced"` assumes half.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from mien.expression.classes import COMPOUNDS, EXPRESSIONS

_NEUTRAL = EXPRESSIONS.index("neutral")
_MIN_SPREAD = 0.05
NATURAL_SHARE = 3954 / (3954 + 12135)  # compound among RAF-DB's emotional faces
SHARES = {"balanced": 0.5}  # expression prior -> share of compounds among emotional faces (else NATURAL_SHARE)
PARAMETERS = ("mean", "std", "weights", "bias")


def features(network_logits: np.ndarray, au_prob: np.ndarray) -> np.ndarray:
    """(n, 28) inputs: log-softmax of the prior-free logits (n, 8) and the AU probabilities (n, 20)."""
    logits = np.asarray(network_logits, np.float64)
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return np.concatenate([log_probs, np.asarray(au_prob, np.float64)], 1)


def compound_share(prior: str) -> float:
    """The share of compounds among emotional faces that an expression prior (`mien.expression.classes.PRIORS`)
    implies."""
    return SHARES.get(prior, NATURAL_SHARE)


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
def load_model() -> tuple[tuple[str, ...], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The shipped model (registry name `compound`): its compound names, the parameters of the 14-way reading and
    those of the gate (whose `offset` makes its log-odds those of equally common compound and basic faces)."""
    from mien.models import resolve

    with np.load(resolve("compound")) as data:
        names = tuple(str(n) for n in data["names"])
        if names != COMPOUNDS or "gate_weights" not in data:
            raise ValueError(f"{resolve('compound')} is not this mien's compound model; refit it "
                             "(python -m mien.train.compound)")
        params = {k: data[k].astype(np.float64) for k in PARAMETERS}
        gate = {k: data[f"gate_{k}"].astype(np.float64) for k in (*PARAMETERS, "offset")}
        return names, params, gate


def gate_log_odds(gate: dict[str, np.ndarray], x: np.ndarray, share: float) -> np.ndarray:
    """(n,) log-odds that faces with inputs `x` show a compound, where a `share` of emotional faces do."""
    logits = ((x - gate["mean"]) / gate["std"]) @ gate["weights"] + gate["bias"]
    return logits[:, 1] - logits[:, 0] + float(gate["offset"]) + np.log(share / (1.0 - share))


def read(network_logits: np.ndarray, au_prob: np.ndarray, expression: np.ndarray,
         share: float = NATURAL_SHARE) -> np.ndarray:
    """(n, 14) joint probabilities P(compound) x P(this compound | compound) of faces (float32; NaN rows where the
    face reads neutral or has no reading); `share`: how common compounds are among emotional faces."""
    names, params, gate = load_model()
    out = np.full((len(au_prob), len(names)), np.nan, np.float32)
    with np.errstate(invalid="ignore"):
        emotional = ~np.isnan(expression).any(1) & (np.nan_to_num(expression).argmax(1) != _NEUTRAL)
    emotional &= ~np.isnan(au_prob).any(1) & ~np.isnan(network_logits).any(1)
    if emotional.any():
        x = features(network_logits[emotional], au_prob[emotional])
        shown = 1.0 / (1.0 + np.exp(-gate_log_odds(gate, x, share)))
        out[emotional] = probabilities(params, x) * shown[:, None]
    return out


def named(joint: np.ndarray) -> tuple[list[str | None], np.ndarray]:
    """The `compound` and `compound_confidence` columns of joint probabilities (n, 14) from `read`: the most likely
    compound and its probability where the face more likely than not shows a compound, else None and NaN."""
    filled = np.nan_to_num(joint, nan=0.0)  # a row without a reading shows no compound
    shown = filled.sum(1) >= 0.5
    confidence = np.where(shown, filled.max(1, initial=0.0), np.nan).astype(np.float32)
    return [COMPOUNDS[k] if s else None for k, s in zip(filled.argmax(1), shown)], confidence
