"""Webcam mode: frames from a browser, one at a time, through the video pipeline (tracking, smoothing)."""

from __future__ import annotations

import time

import cv2
import numpy as np

from mien.io.table import face_records
from mien.options import video_options
from mien.video.analyzer import VideoAnalyzer
from mien.video.reader import VideoFrame

MAX_SIDE = 1280


class LiveSession:
    """One browser camera: a `VideoAnalyzer` of its own, so track ids and smoothing follow the stream."""

    def __init__(self, rules=None) -> None:
        self.video = VideoAnalyzer(video_options())
        self.rules = rules
        self.started = time.monotonic()
        self.frames = 0

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
        return {"frame": frame.index, "time_s": round(frame.time_s, 3), "width": rgb.shape[1],
                "height": rgb.shape[0], "faces": face_records(faces, empty_rows=False, rules=self.rules),
                "ms": round(1000 * (time.perf_counter() - began), 1)}

    def close(self) -> None:
        self.video.close()
