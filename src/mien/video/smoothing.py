"""Per-track temporal smoothing: One-Euro on geometry, exponential moving average on scores.

The One-Euro filter (Casiez et al., CHI 2012) is a low-pass filter whose cut-off rises with
speed: a still face stops jittering, a moving one is followed without lag. Probabilities, AUs
and valence/arousal get a time-constant EMA (frame-rate independent). Raw values stay in the
table; smoothed ones go to `Faces.smoothed` and the `*_smooth` columns.
"""

from __future__ import annotations

import math

import numpy as np

from mien.faces import Faces
from mien.options import SmoothingOptions


def _alpha(cutoff_hz, dt: float):
    """Smoothing factor of a first-order low-pass filter at `cutoff_hz` (a number or an array)."""
    tau = 1.0 / (2 * np.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter over arrays of any shape (NaN input passes through and resets nothing)."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, time_s: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None or self._t is None or time_s <= self._t or np.isnan(self._x).any():
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), time_s
            return x.astype(np.float32)
        if np.isnan(x).any():
            return x.astype(np.float32)
        dt = time_s - self._t
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        a = _alpha(self.min_cutoff + self.beta * np.abs(self._dx), dt)
        self._x = a * x + (1 - a) * self._x
        self._t = time_s
        return self._x.astype(np.float32)


class Ema:
    """Exponential moving average with a time constant in seconds."""

    def __init__(self, tau_s: float = 0.25) -> None:
        self.tau_s = tau_s
        self._x: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, time_s: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if np.isnan(x).any():
            return x.astype(np.float32)
        if self._x is None or self._t is None or time_s <= self._t:
            self._x = x.copy()
        else:
            a = 1.0 - math.exp(-(time_s - self._t) / self.tau_s)
            self._x = a * x + (1 - a) * self._x
        self._t = time_s
        return self._x.astype(np.float32)


# Faces attribute -> filter kind
_GEOMETRY = ("boxes", "landmarks", "pose", "gaze")
_SCORES = ("expression", "aus", "affect", "compound")


def _value(faces: Faces, key: str, i: int) -> np.ndarray:
    """Face `i`'s raw `key`; a face that reads neutral has no compound (NaN), which smooths as none at all (zeros)."""
    value = getattr(faces, key)[i]
    if key == "compound" and np.isnan(value).all() and not np.isnan(faces.expression[i]).any():
        return np.zeros_like(value)
    return value


class TrackSmoother:
    """Keeps one set of filters per track id and fills `Faces.smoothed`."""

    def __init__(self, options: SmoothingOptions | None = None) -> None:
        self.options = options or SmoothingOptions()
        self._filters: dict[int, dict[str, OneEuroFilter | Ema]] = {}
        self._last_seen: dict[int, float] = {}

    def _new_filters(self) -> dict[str, OneEuroFilter | Ema]:
        o = self.options
        filters: dict[str, OneEuroFilter | Ema] = {k: OneEuroFilter(o.min_cutoff, o.beta) for k in _GEOMETRY}
        filters.update({k: Ema(o.tau_s) for k in _SCORES})
        return filters

    def __call__(self, faces: Faces) -> Faces:
        """Fill `faces.smoothed` (same keys and shapes as the raw arrays) for tracked faces."""
        t = faces.time_s if faces.time_s is not None else float(faces.frame)
        for key in _GEOMETRY + _SCORES:
            faces.smoothed[key] = np.array(getattr(faces, key), np.float32, copy=True)
        for i, track_id in enumerate(faces.track_ids):
            if track_id < 0:
                continue
            track_id = int(track_id)
            if t - self._last_seen.get(track_id, -np.inf) > self.options.forget_s:
                self._filters[track_id] = self._new_filters()
            self._last_seen[track_id] = t
            for key, f in self._filters[track_id].items():
                faces.smoothed[key][i] = f(_value(faces, key, i), t)
        # Forget tracks long gone, so memory stays flat over long videos.
        stale = [k for k, seen in self._last_seen.items() if t - seen > 10 * self.options.forget_s]
        for k in stale:
            self._filters.pop(k, None)
            self._last_seen.pop(k, None)
        return faces
