"""Webcam mode: frames from a browser, one at a time, through the video pipeline (tracking, smoothing), with
per-person neutral calibration on request (`LiveSession.calibrate`)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pandas as pd

from mien.io.table import face_records
from mien.options import video_options
from mien.video.analyzer import VideoAnalyzer
from mien.video.reader import VideoFrame

MAX_SIDE = 1280
CALIBRATION_SECONDS = (0.5, 30.0)  # the rest window a browser may ask for
CALIBRATION_MIN_ROWS = 3  # a track needs this many rows in the window to be calibrated


class LiveSession:
    """One browser camera: a `VideoAnalyzer` of its own, so track ids and smoothing follow the stream."""

    def __init__(self, rules=None) -> None:
        self.video = VideoAnalyzer(video_options())
        self.rules = rules
        self.started = time.monotonic()
        self.frames = 0
        self._collect_until: float | None = None  # stream seconds: rows before this are the rest being collected
        self._collected: list[dict] = []
        self._rests: dict = {}  # track id -> `neutral.Rest`

    def calibrate(self, seconds: float) -> None:
        """Take each face's next `seconds` as its neutral rest (the person holds a neutral face); from then on
        every row of a calibrated track carries the `_cal` columns of `mien.expression.neutral`."""
        low, high = CALIBRATION_SECONDS
        if not low <= seconds <= high:
            raise ValueError(f"calibrate: give {low:g}-{high:g} seconds, not {seconds:g}")
        self._collect_until = time.monotonic() - self.started + seconds
        self._collected = []

    def process(self, jpeg: bytes) -> dict:
        """Results for one JPEG/PNG/WebP-encoded frame, or {"error": ...} when it cannot be decoded."""
        began = time.perf_counter()
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            return {"error": "frame could not be decoded as an image"}
        if max(bgr.shape[:2]) > MAX_SIDE:
            scale = MAX_SIDE / max(bgr.shape[:2])
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        frame = VideoFrame(self.frames, time.monotonic() - self.started, rgb)
        faces = self.video.process(frame, source="live")
        self.frames += 1
        records = self._calibrated(face_records(faces, empty_rows=False, rules=self.rules), frame.time_s)
        reply = {"frame": frame.index, "time_s": round(frame.time_s, 3), "width": rgb.shape[1],
                 "height": rgb.shape[0], "faces": records}
        if self._collect_until is not None:
            reply["calibration"] = {"state": "collecting", "remaining_s": round(self._collect_until - frame.time_s, 2)}
        elif self._rests:
            reply["calibration"] = {"state": "calibrated", "tracks": sorted(self._rests)}
        reply["ms"] = round(1000 * (time.perf_counter() - began), 1)
        return reply

    def _calibrated(self, records: list[dict], time_s: float) -> list[dict]:
        """`records` with the `_cal` columns where their track has a rest; collects the rest while asked to."""
        if self._collect_until is not None:
            if time_s < self._collect_until:
                self._collected += [r for r in records if r.get("face_found") and r.get("expr_neutral") is not None]
            else:
                self._finish_collecting()
        if not self._rests or not records:
            return records
        from mien.expression.neutral import with_rests

        frame = pd.DataFrame(records)
        frame["person"] = frame["track_id"]
        frame = with_rests(frame, self._rests, rules=self.rules)
        added = [c for c in frame.columns if c.endswith("_cal")]
        for record, values in zip(records, frame[added].to_dict("records")):
            record.update({k: None if isinstance(v, float) and v != v else v for k, v in values.items()})
        return records

    def _finish_collecting(self) -> None:
        from mien.expression.neutral import rest_of

        self._collect_until = None
        if not self._collected:
            return
        rows = pd.DataFrame(self._collected)
        for track, group in rows.groupby("track_id"):
            if len(group) >= CALIBRATION_MIN_ROWS:
                self._rests[int(track)] = rest_of(group)
        self._collected = []

    def close(self) -> None:
        self.video.close()
