"""Generated videos for tests and benchmarks: copies of the bundled astronaut face moving on a plain
background, each copy tinted so they look different, optionally hidden for a while.

The face is the public-domain astronaut portrait shipped with mien (`mien/data/astronaut.jpg`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from mien.io.images import load_image
from mien.video.reader import VideoFrame

# Head and shoulders around the astronaut's face in the 512 px portrait (y0, y1, x0, x1).
_FACE_REGION = (30, 230, 125, 325)


def face_sprite(side: int = 180, tint: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """(side, side, 3) uint8 RGB crop of the astronaut's face, colour-scaled by `tint`."""
    rgb = load_image(Path(str(files("mien") / "data" / "astronaut.jpg"))).rgb
    y0, y1, x0, x1 = _FACE_REGION
    crop = cv2.resize(rgb[y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.clip(crop * np.array(tint, np.float32), 0, 255).astype(np.uint8)


@dataclass
class Actor:
    """A face in a generated scene: `position(t)` gives its top-left corner (x, y) or None when hidden."""

    sprite: np.ndarray
    position: Callable[[float], tuple[float, float] | None]


def render(actors: list[Actor], time_s: float, size: tuple[int, int] = (480, 640), noise: float = 0.0,
           seed: int = 0) -> np.ndarray:
    """One (H, W, 3) RGB frame: grey background, actors drawn in order (later ones in front)."""
    height, width = size
    frame = np.full((height, width, 3), 90, np.uint8)
    for actor in actors:
        where = actor.position(time_s)
        if where is None:
            continue
        _paste(frame, actor.sprite, int(round(where[0])), int(round(where[1])))
    if noise:
        rng = np.random.default_rng(seed)
        frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
    return frame


def _paste(frame: np.ndarray, sprite: np.ndarray, x: int, y: int) -> None:
    h, w = sprite.shape[:2]
    fy0, fx0 = max(y, 0), max(x, 0)
    fy1, fx1 = min(y + h, frame.shape[0]), min(x + w, frame.shape[1])
    if fy1 > fy0 and fx1 > fx0:
        frame[fy0:fy1, fx0:fx1] = sprite[fy0 - y:fy1 - y, fx0 - x:fx1 - x]


def frames(actors: list[Actor], seconds: float, fps: float = 30.0, size: tuple[int, int] = (480, 640),
           noise: float = 0.0) -> Iterator[VideoFrame]:
    """The scene's frames as `VideoFrame`s (per-frame sensor noise of std `noise` grey levels)."""
    for index in range(int(round(seconds * fps))):
        t = index / fps
        yield VideoFrame(index, t, render(actors, t, size, noise, seed=index))


def write_video(path: str | Path, video: Iterator[VideoFrame], fps: float = 30.0) -> Path:
    """Encode frames to a video file (MPEG-4 Part 2 in .mp4/.avi; size from the first frame)."""
    path = Path(path)
    writer = None
    try:
        for frame in video:
            if writer is None:
                h, w = frame.rgb.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise OSError(f"{path}: cannot write video")
            writer.write(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return path


def crossing_scene(seconds: float = 4.0, width: int = 640, side: int = 180) -> list[Actor]:
    """Two faces that swap sides, passing each other half a face apart vertically."""
    span = width - side

    def left_to_right(t):
        return span * min(t / seconds, 1.0), 40

    def right_to_left(t):
        return span * (1 - min(t / seconds, 1.0)), 40 + side * 0.55

    return [Actor(face_sprite(side), left_to_right), Actor(face_sprite(side, (1.25, 0.9, 0.7)), right_to_left)]


def faces_grid(count: int, side: int = 150, size: tuple[int, int] = (480, 640), drift: float = 20.0) -> list[Actor]:
    """`count` faces in a grid, each drifting slowly, for multi-face speed tests."""
    height, width = size
    cols = int(np.ceil(np.sqrt(count * width / height)))
    rows = int(np.ceil(count / cols))
    tints = [(1, 1, 1), (1.2, 0.9, 0.8), (0.8, 1.0, 1.2), (1.1, 1.1, 0.8), (0.9, 0.8, 1.1)]
    actors = []
    for k in range(count):
        cx = (k % cols + 0.5) * width / cols - side / 2
        cy = (k // cols + 0.5) * height / rows - side / 2
        phase = k * 1.3
        actors.append(Actor(face_sprite(side, tints[k % len(tints)]),
                            lambda t, cx=cx, cy=cy, p=phase: (cx + drift * np.sin(t + p), cy + drift * np.cos(t + p))))
    return actors
