"""Plain-language rationales from measured evidence only: AU estimates and heatmap regions.

Deterministic templates, no language model. Each expression has the action units that
prototypically signal it (Ekman & Friesen's EMFACS predictions, as summarised in the FACS
Investigator's Guide); the rationale says which of them were measured, how strongly, which were
absent, and which other AUs were strong. Example:
"happy (0.91): AU12 lip corner puller strong (0.92), AU06 cheek raiser moderate (0.41); brows relaxed".
"""

from __future__ import annotations

import numpy as np

from mien.expression.aus import AU_DESCRIPTIONS, AU_NAMES

EXPECTED_AUS: dict[str, tuple[str, ...]] = {
    "happy": ("AU06", "AU12"),
    "surprise": ("AU01", "AU02", "AU05", "AU26"),
    "sad": ("AU01", "AU04", "AU15"),
    "anger": ("AU04", "AU05", "AU07", "AU23"),
    "disgust": ("AU09", "AU10", "AU15"),
    "fear": ("AU01", "AU02", "AU04", "AU05", "AU20", "AU26"),
    "contempt": ("AU12", "AU14"),
    "neutral": (),
}
# Facial regions where each expression's AUs act (for checking heatmaps).
EXPECTED_REGIONS: dict[str, tuple[str, ...]] = {
    "happy": ("mouth", "cheeks"), "surprise": ("brows", "eyes", "mouth"), "sad": ("brows", "mouth", "chin"),
    "anger": ("brows", "eyes", "mouth"), "disgust": ("nose", "mouth"), "fear": ("brows", "eyes", "mouth"),
    "contempt": ("mouth", "cheeks"), "neutral": (),
}
LEVELS = ((0.6, "strong"), (0.35, "moderate"), (0.2, "slight"))
_BROWS = ("AU01", "AU02", "AU04")
_UNCERTAIN = 0.5


def level(value: float) -> str | None:
    """Word for an AU intensity: strong, moderate, slight, or None below 0.2."""
    return next((word for floor, word in LEVELS if value >= floor), None)


def _au(name: str, value: float) -> str:
    return f"{name} {AU_DESCRIPTIONS[name]} {level(value)} ({value:.2f})"


def rationale(expression: str, probability: float, aus: np.ndarray,
              regions: dict[str, float] | None = None) -> str:
    """One sentence explaining an expression call from (20,) AU estimates (and heatmap region shares)."""
    au = {name: float(v) for name, v in zip(AU_NAMES, np.nan_to_num(np.asarray(aus, np.float64)))}
    expected = EXPECTED_AUS.get(expression, ())
    parts = []
    seen = sorted((n for n in expected if level(au[n])), key=lambda n: -au[n])
    if seen:
        parts.append(", ".join(_au(n, au[n]) for n in seen))
    missing = [n for n in expected if not level(au[n])]
    if expected and missing:
        parts.append("not seen: " + ", ".join(f"{n} {AU_DESCRIPTIONS[n]}" for n in missing))
    others = sorted((n for n in AU_NAMES if n not in expected and au[n] >= LEVELS[0][0] and n != "AU25"),
                    key=lambda n: -au[n])[:3]
    if others:
        parts.append("also " + ", ".join(_au(n, au[n]) for n in others))
    if expression == "neutral":
        active = [n for n in AU_NAMES if level(au[n]) and n != "AU25"]
        parts.insert(0, "no action unit above slight" if not active else
                     f"only {', '.join(_au(n, au[n]) for n in active[:3])}")
    if not any(au[n] >= LEVELS[2][0] for n in _BROWS) and "brows" not in " ".join(parts):
        parts.append("brows relaxed")
    if regions:
        top = sorted(((v, k) for k, v in regions.items() if k != "other"), reverse=True)[:2]
        parts.append("the model relied most on the " + " and ".join(f"{k} ({v:.0%})" for v, k in top))
    head = f"{expression} ({probability:.2f}{', uncertain' if probability < _UNCERTAIN else ''})"
    return head + ": " + "; ".join(parts)
