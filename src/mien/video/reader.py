"""Frames from video files, image sequences, webcams and network streams, with sampling.

`open_video(source)` accepts a video file (mp4, avi, mkv, webm... anything OpenCV's FFmpeg
reads), a folder or glob of images (an image sequence), a webcam index ("0") or a stream URL
(rtsp://, http(s)://...). Frames come out as (H, W, 3) uint8 RGB with their index and time in
seconds. Problems raise `VideoError` with a one-line reason; opening and reading network
streams time out instead of hanging.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from mien.io.images import IMAGE_SUFFIXES, ImageError, load_image
from mien.models.quiet import native_stderr_silenced

DEFAULT_FPS = 30.0  # assumed when a video or image sequence does not say
STREAM_TIMEOUT_MS = 5000
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class VideoError(ValueError):
    """A video input that cannot be read, with a one-line reason."""


@dataclass
class VideoInfo:
    """What is known about a video source before reading it.

    Attributes:
        source: the path, URL or camera index as given.
        kind: "file", "images", "camera" or "stream".
        fps: frames per second (`DEFAULT_FPS` when the source does not say; see `fps_assumed`).
        frame_count: frames in the source, None for cameras and streams or when unknown.
        width, height: frame size in pixels.
    """

    source: str
    kind: str
    fps: float
    fps_assumed: bool
    frame_count: int | None
    width: int
    height: int

    @property
    def duration_s(self) -> float | None:
        """Length in seconds, when the frame count is known."""
        return None if self.frame_count is None else self.frame_count / self.fps


@dataclass
class VideoFrame:
    """One decoded frame: `index` counts source frames from 0, `time_s` = index / fps."""

    index: int
    time_s: float
    rgb: np.ndarray


class VideoReader:
    """Iterates the sampled frames of a source; use `open_video` to make one.

    Sampling: `every` keeps every Nth frame; `fps` keeps about that many frames per second
    (never more than the source has); `start_s`/`end_s` bound the time range.
    After iteration, `warnings` lists anything odd and `truncated` says whether a file ended early.
    """

    def __init__(self, info: VideoInfo, capture: cv2.VideoCapture | None, images: list[Path] | None,
                 every: int = 1, fps: float | None = None, start_s: float = 0.0, end_s: float | None = None) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        if fps is not None and fps <= 0:
            raise ValueError("fps must be positive")
        self.info = info
        self.every, self.fps, self.start_s, self.end_s = every, fps, start_s, end_s
        self.warnings: list[str] = []
        self.truncated = False
        self._capture, self._images = capture, images

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _wanted(self, index: int, time_s: float, next_sample: list[float]) -> bool:
        if time_s < self.start_s - 1e-9:
            return False
        position = index - round(self.start_s * self.info.fps)
        if self.fps is not None:
            if time_s + 1e-9 < next_sample[0]:
                return False
            next_sample[0] = max(next_sample[0] + 1.0 / self.fps, time_s)
            return True
        return position % self.every == 0

    def __iter__(self) -> Iterator[VideoFrame]:
        fps = self.info.fps
        next_sample = [self.start_s]
        index = self._seek_to_start()
        while True:
            time_s = index / fps
            if self.end_s is not None and time_s >= self.end_s:
                break
            wanted = self._wanted(index, time_s, next_sample)
            rgb = self._next(index, decode=wanted)
            if rgb is None:
                break
            if wanted and rgb is not False:
                yield VideoFrame(index, time_s, rgb)
            index += 1
        expected = self.info.frame_count
        if self.info.kind == "file" and expected and self.end_s is None and index < expected - 1:
            self.truncated = True
            self.warnings.append(f"{self.info.source}: ended after {index} of {expected} frames (truncated or damaged)")

    def _seek_to_start(self) -> int:
        """Jump a file to the first frame at or after `start_s` (so a late start does not decode
        everything before it); returns that frame's index, 0 when seeking is not possible."""
        first = int(np.ceil(self.start_s * self.info.fps - 1e-6))
        if first <= 0 or self._capture is None or self.info.kind != "file":
            return 0
        with native_stderr_silenced():
            moved = self._capture.set(cv2.CAP_PROP_POS_FRAMES, first)
        if moved and int(round(self._capture.get(cv2.CAP_PROP_POS_FRAMES))) == first:
            return first
        # The container cannot seek exactly: start again from the first frame and skip forward.
        self._capture.release()
        self._capture = cv2.VideoCapture(self.info.source, cv2.CAP_FFMPEG)
        return 0

    def _next(self, index: int, decode: bool):
        """RGB frame, False for a skipped (or unreadable image-sequence) frame, None at the end."""
        if self._images is not None:
            if index >= len(self._images):
                return None
            if not decode:
                return False
            try:
                return load_image(self._images[index]).rgb
            except ImageError as exc:
                self.warnings.append(f"{self._images[index]}: {exc}; frame skipped")
                return False
        if self._capture is None:
            return None
        with native_stderr_silenced():  # FFmpeg's own lines about damaged frames; we warn once instead
            grabbed = self._capture.grab()
        if not grabbed:
            return None
        if not decode:
            return False
        ok, bgr = self._capture.retrieve()
        if not ok or bgr is None:
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_video(source: str | int | Path, every: int = 1, fps: float | None = None, start_s: float = 0.0,
               end_s: float | None = None, input_fps: float | None = None) -> VideoReader:
    """Open a video file, image sequence (folder or glob), webcam index or stream URL.

    Args:
        source: what to read (see module docs).
        every: keep every Nth frame.
        fps: keep about this many frames per second instead.
        start_s, end_s: time range in seconds (end None: to the end).
        input_fps: frame rate of an image sequence, or an override when a file's is missing or wrong.

    Raises:
        VideoError: the source cannot be opened or has no decodable frame.
    """
    with native_stderr_silenced():  # OpenCV/FFmpeg log lines; failures become one VideoError
        return _open(source, every, fps, start_s, end_s, input_fps)


def _open(source, every, fps, start_s, end_s, input_fps) -> VideoReader:
    text = str(source)
    if isinstance(source, int) or text.isdigit():
        return _open_capture(text, cv2.VideoCapture(int(text)), "camera", every, fps, start_s, end_s, input_fps)
    if _URL.match(text):
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
        capture = cv2.VideoCapture(text, cv2.CAP_FFMPEG, params)
        return _open_capture(text, capture, "stream", every, fps, start_s, end_s, input_fps)
    path = Path(text)
    if path.is_dir() or glob.has_magic(text):
        images = _image_sequence(path, text)
        return _open_images(text, images, every, fps, start_s, end_s, input_fps)
    if not path.exists():
        raise VideoError(f"{text}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{text}: empty file")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    return _open_capture(text, capture, "file", every, fps, start_s, end_s, input_fps)


def _image_sequence(path: Path, text: str) -> list[Path]:
    found = path.iterdir() if path.is_dir() else (Path(p) for p in glob.glob(text))
    images = sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise VideoError(f"{text}: no images found for an image sequence")
    return images


def _open_images(text, images, every, fps, start_s, end_s, input_fps) -> VideoReader:
    first = None
    for candidate in images[:10]:
        try:
            first = load_image(candidate).rgb
            break
        except ImageError:
            continue
    if first is None:
        raise VideoError(f"{text}: the first images of the sequence cannot be read")
    info = VideoInfo(text, "images", input_fps or DEFAULT_FPS, input_fps is None, len(images),
                     first.shape[1], first.shape[0])
    return VideoReader(info, None, images, every, fps, start_s, end_s)


def _open_capture(text, capture, kind, every, fps, start_s, end_s, input_fps) -> VideoReader:
    if not capture.isOpened():
        capture.release()
        reason = {"file": "not a readable video (unknown format or damaged)",
                  "camera": "camera not available", "stream": "stream cannot be opened (unreachable or not a video)"}
        raise VideoError(f"{text}: {reason[kind]}")
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    source_fps = capture.get(cv2.CAP_PROP_FPS)
    known_fps = bool(np.isfinite(source_fps) and 0 < source_fps <= 1000)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if kind == "file" else 0
    if kind == "file":
        # Fail at open time, not mid-run, on a header without frames or a stream OpenCV cannot decode;
        # then reopen rather than seek back, which some containers do inexactly.
        ok = capture.grab()
        capture.release()
        if not ok:
            raise VideoError(f"{text}: no decodable frames")
        capture = cv2.VideoCapture(text, cv2.CAP_FFMPEG)
    fps_value = input_fps or (source_fps if known_fps else DEFAULT_FPS)
    info = VideoInfo(text, kind, float(fps_value), input_fps is None and not known_fps,
                     count if count > 0 else None, width, height)
    return VideoReader(info, capture, None, every, fps, start_s, end_s)
