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
import time
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
    """One decoded frame: `index` counts source frames from 0 (after a seek, from OpenCV's estimate of
    the seek point); `time_s` is the frame's own timestamp in seconds (the container's, so variable
    frame rates are exact)."""

    index: int
    time_s: float
    rgb: np.ndarray


class VideoReader:
    """Iterates the sampled frames of a source; use `open_video` to make one.

    Sampling: `every` keeps every Nth frame; `fps` keeps about that many frames per second of
    timestamps (never more than the source has); `start_s`/`end_s` bound the time range, as
    [start_s, end_s) of frame timestamps, so consecutive ranges share no frame.
    After iteration, `warnings` lists anything odd and `truncated` says whether a file ended well
    before its stated duration (frame counts in containers are estimates; a few short is normal).
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
        self.max_frames: int | None = None  # stop after reading this many frames in range (a cap whatever the header says)
        self.capped = False
        self.reached_end = False  # stopped at end_s (the file went on)
        self._capture, self._images = capture, images

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _wanted(self, position: int, time_s: float, next_sample: list[float]) -> bool:
        """Sampling: `position` counts frames from the first one at or after `start_s`."""
        if time_s < self.start_s - 1e-9:
            return False
        if self.fps is not None:
            if time_s + 1e-9 < next_sample[0]:
                return False
            next_sample[0] = max(next_sample[0] + 1.0 / self.fps, time_s)
            return True
        return position % self.every == 0

    def __iter__(self) -> Iterator[VideoFrame]:
        next_sample = [self.start_s]
        index = self._seek_to_start()
        seeked = index > 0
        position = 0  # frames at or after start_s
        last_time: float | None = None
        started = time.monotonic()
        while True:
            if not self._grab(index):
                break
            time_s = self._timestamp(index, last_time, started)
            if seeked:  # a seek that landed after start_s would lose frames: read from the start instead
                seeked = False
                if time_s > self.start_s + 0.5 / self.info.fps:
                    self._reopen()
                    index, last_time = 0, None
                    continue
            last_time = time_s
            if self.end_s is not None and time_s >= self.end_s - 1e-9:
                self.reached_end = True
                break
            if self.max_frames is not None and position >= self.max_frames:
                self.capped = True
                self.warnings.append(f"{self.info.source}: stopped after {position} frames (the frame cap), "
                                     f"at {time_s:.2f} s")
                break
            wanted = time_s >= self.start_s - 1e-9 and self._wanted(position, time_s, next_sample)
            if time_s >= self.start_s - 1e-9:
                position += 1
            if wanted:
                rgb = self._retrieve(index)
                if rgb is None:
                    break
                if rgb is not False:
                    yield VideoFrame(index, time_s, rgb)
            index += 1
        self._check_end(last_time)

    def _timestamp(self, index: int, last: float | None, started: float) -> float:
        """Seconds of the frame just grabbed: the container's timestamp for files and streams (exact for
        variable frame rates), the clock for cameras, index / fps for image sequences; never going back."""
        step = 1.0 / self.info.fps
        if self._capture is None:
            return index * step
        if self.info.kind == "camera":
            value = time.monotonic() - started
        else:
            value = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if not np.isfinite(value) or value < 0 or (last is not None and value <= last):
            value = index * step if last is None else last + step  # the demuxer gave no usable time
        return float(value)

    def _check_end(self, last_time: float | None) -> None:
        """Frame counts in containers are estimates (duration x fps): an intact file often holds a few
        frames fewer. A file is reported truncated only when its frames stop well before its stated
        duration (more than 10% and a frame short)."""
        info = self.info
        if info.kind != "file" or not info.frame_count or self.end_s is not None:
            return
        stated = info.frame_count / info.fps
        read = 0.0 if last_time is None else last_time + 1.0 / info.fps
        if read < 0.9 * stated - 1.0 / info.fps:
            self.truncated = True
            self.warnings.append(f"{info.source}: frames end at {read:.2f} s of the {stated:.2f} s the container "
                                 "states (truncated or damaged)")

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
        self._reopen()  # the container cannot seek exactly: start again from the first frame and skip forward
        return 0

    def _reopen(self) -> None:
        self._capture.release()
        self._capture = cv2.VideoCapture(self.info.source, cv2.CAP_FFMPEG)

    def _grab(self, index: int) -> bool:
        """Advance to frame `index`; False at the end."""
        if self._images is not None:
            return index < len(self._images)
        if self._capture is None:
            return False
        with native_stderr_silenced():  # FFmpeg's own lines about damaged frames; we warn once instead
            return bool(self._capture.grab())

    def _retrieve(self, index: int):
        """RGB of the grabbed frame; False for an unreadable image of a sequence (skipped), None when
        a video's frame cannot be decoded (the end)."""
        if self._images is not None:
            try:
                return load_image(self._images[index]).rgb
            except ImageError as exc:
                self.warnings.append(f"{self._images[index]}: {exc}; frame skipped")
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

