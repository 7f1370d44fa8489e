"""Settings of the face stages that `mien.options` (and so `mien --help`) needs without their heavy imports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ALIGN_SIZE = 112  # side of the aligned face crop the AU and explanation stages read

# "crops": no detector; each image is one cropped face (`mien.Analyzer`)
DetectMode = Literal["fast", "thorough", "auto", "crops"]

# Default detector confidence for a row. With mesh-extent boxes, rows on WIDER-mini are faces 93% of the
# time at 0.6 against 91% at 0.5, at the same easy recall (`benchmarks/detector_wider.py`); sky and
# drawings that BlazeFace scores around 0.5 are dropped.
DEFAULT_MIN_SCORE = 0.6


@dataclass(frozen=True)
class DetectorOptions:
    """Options of `FaceDetector`.

    Attributes:
        mode: "fast", "thorough" or "auto" (see `mien.face.detect`), or "crops" (no detection: each image is one
            face, cropped).
        min_score: drop detections scoring below this (0-1).
        min_face_size: drop faces whose box is smaller than this many pixels (shorter side).
        max_faces: keep at most this many faces, highest scores first (None: all).
        nms_iou: boxes overlapping more than this IoU are merged.
    """

    mode: DetectMode = "auto"
    min_score: float = DEFAULT_MIN_SCORE
    min_face_size: int = 0
    max_faces: int | None = None
    nms_iou: float = 0.3
