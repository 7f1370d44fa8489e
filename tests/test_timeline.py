"""Timelines on a hand-made video table with known answers: baseline, segments, events, summary."""

import numpy as np
import pandas as pd
import pytest

from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS
from mien.video.timeline import add_baseline, events, expression_segments, track_summary


def _table(fps=30.0, seconds=10.0, seed=0):
    """Track 0: neutral throughout except a planted 0.3 s happy spike (AU12 too) at 5.0 s.
    Track 1: 4 s sad, then 6 s happy."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(fps * seconds)) / fps
    frames = []
    for track_id in (0, 1):
        probs = np.full((len(t), 8), 0.02)
        aus = rng.uniform(0.0, 0.05, (len(t), len(AU_NAMES)))
        if track_id == 0:
            probs[:, EXPRESSIONS.index("neutral")] = 0.86
            spike = (t >= 5.0) & (t < 5.3)
            probs[spike, EXPRESSIONS.index("neutral")] = 0.1
            probs[spike, EXPRESSIONS.index("happy")] = 0.76 + 0.02
            aus[spike, AU_NAMES.index("AU12")] = 0.8
        else:
            probs[t < 4, EXPRESSIONS.index("sad")] = 0.86
            probs[t >= 4, EXPRESSIONS.index("happy")] = 0.86
        probs /= probs.sum(1, keepdims=True)
        frame = pd.DataFrame({"track_id": track_id, "time_s": t, "frame": np.arange(len(t))})
        for i, c in enumerate(EXPRESSIONS):
            frame[f"expr_{c}"] = probs[:, i]
            frame[f"expr_{c}_smooth"] = probs[:, i]
        for i, au in enumerate(AU_NAMES):
            frame[au] = aus[:, i]
        frame["expression"] = [EXPRESSIONS[i] for i in probs.argmax(1)]
        frame["expression_smooth"] = frame["expression"]
        frame["valence"] = np.where(frame["expression"] == "happy", 0.8, np.where(frame["expression"] == "sad", -0.6, 0.0))
        frame["arousal"] = 0.1
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_planted_spike_is_found_as_a_micro_candidate():
    found = events(_table())
    happy = found[(found["track_id"] == 0) & (found["label"] == "happy")]
    assert len(happy) == 1
    spike = happy.iloc[0]
    assert spike["onset_s"] == pytest.approx(5.0, abs=0.04) and spike["duration_s"] == pytest.approx(0.3, abs=0.04)
    assert spike["micro_candidate"] and spike["kind"] == "expression"
    au12 = found[(found["track_id"] == 0) & (found["label"] == "AU12")]
    assert len(au12) == 1 and au12.iloc[0]["apex_s"] == pytest.approx(5.0, abs=0.31)
    assert len(found[found["track_id"] == 0]) == 2  # nothing else on the calm track


def test_baseline_is_the_calmest_stretch():
    based = add_baseline(_table())
    calm = based[(based["track_id"] == 0) & (based["time_s"] < 4)]
    assert calm["AU12_delta"].abs().max() < 0.06 and calm["expr_neutral_delta"].abs().max() < 1e-6
    spike = based[(based["track_id"] == 0) & (based["time_s"] >= 5.0) & (based["time_s"] < 5.3)]
    assert (spike["AU12_delta"] > 0.7).all()


def test_segments_and_summary():
    table = _table()
    segments = expression_segments(table)
    one = segments[segments["track_id"] == 1]
    assert one["expression"].tolist() == ["sad", "happy"]
    assert one["start_s"].tolist() == pytest.approx([0.0, 4.0], abs=0.04)
    assert one["end_s"].iloc[-1] == pytest.approx(10.0, abs=0.04)
    zero = segments[segments["track_id"] == 0]
    assert zero["expression"].tolist() == ["neutral"]  # the 0.3 s spike is an event, not a segment
    summary = track_summary(table).set_index("track_id")
    assert summary.loc[1, "sad_s"] == pytest.approx(4.0, abs=0.05)
    assert summary.loc[1, "happy_share"] == pytest.approx(0.6, abs=0.01)
    assert summary.loc[0, "frames"] == 300
    assert summary.loc[1, "valence_mean"] == pytest.approx(0.6 * 0.8 - 0.4 * 0.6, abs=0.01)
