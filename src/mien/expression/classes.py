"""The eight expression classes mien predicts, and the names other datasets use for them."""

from __future__ import annotations

# Order follows FER+ (the vote columns of its CSV files); probability columns use it too.
EXPRESSIONS: tuple[str, ...] = (
    "neutral", "happy", "surprise", "sad", "anger", "disgust", "fear", "contempt",
)
# RAF-CE's 14 compound expressions (Du, Tao & Martinez 2014), in the order of the `compound` reading's probabilities.
COMPOUNDS: tuple[str, ...] = (
    "angrily disgusted", "angrily surprised", "disgustedly surprised", "fearfully angry", "fearfully disgusted",
    "fearfully surprised", "happily disgusted", "happily fearful", "happily sad", "happily surprised", "sadly angry",
    "sadly disgusted", "sadly fearful", "sadly surprised",
)
# Class priors an expression model may assume before it sees the face (see ExpressionClassifier).
PRIORS: tuple[str, ...] = ("natural", "balanced", "ferplus", "rafdb")

_SYNONYMS = {
    "neutral": "neutral", "calm": "neutral",
    "happy": "happy", "happiness": "happy", "joy": "happy",
    "surprise": "surprise", "surprised": "surprise",
    "sad": "sad", "sadness": "sad",
    "anger": "anger", "angry": "anger",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "contempt": "contempt", "contemptuous": "contempt",
}


def canonical_expression(name: str) -> str | None:
    """mien's class name for a dataset's label (`angry` -> `anger`), or None if unknown."""
    return _SYNONYMS.get(name.strip().lower())
