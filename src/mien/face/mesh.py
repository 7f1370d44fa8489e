"""478-point mesh, 52 blendshapes and the facial transformation matrix, per detected face.

Each detected box is cut out as a square crop (1.9x the box, 256 px) and given to MediaPipe's
FaceLandmarker; the face nearest the crop centre is kept and its landmarks mapped back to image
pixels. Working per crop makes small faces in large photos usable and keeps the mesh tied to
the detection it came from. A box whose crop shows no face is reported with `no_mesh`.

MediaPipe runs one landmarker call on one core, so with several faces the crops are shared
among `workers` landmarkers on as many threads (about 1.8x faster on two cores).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from mien.face.blendshapes import BLENDSHAPE_NAMES
from mien.models import resolve
from mien.models.quiet import blank_image, native_stderr_silenced

CROP_SIZE = 256
CROP_SCALE = 1.9


@dataclass
class MeshResult:
    """Mesh outputs for n boxes; rows of failed faces are NaN and `found` is False."""

    landmarks: np.ndarray  # (n, 478, 3) pixels
    blendshapes: np.ndarray  # (n, 52)
    transforms: np.ndarray  # (n, 4, 4) face pose in MediaPipe's metric face space
    found: np.ndarray  # (n,) bool


def crop_transform(box: np.ndarray, size: int = CROP_SIZE, scale: float = CROP_SCALE) -> np.ndarray:
    """2x3 affine mapping image pixels to a square crop of `size` px centred on `box`."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1]) * scale
    s = size / max(side, 1.0)
    return np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], dtype=np.float64)


class MeshEstimator:
    """Runs MediaPipe's FaceLandmarker (mesh + blendshapes) on face crops.

    Args:
        min_confidence: minimum face detection/presence confidence inside a crop.
        workers: landmarkers run in parallel on frames with several faces (default: up to 2 cores).
    """

    def __init__(self, min_confidence: float = 0.3, workers: int | None = None) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(resolve("face_landmarker"))),
            num_faces=2,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        count = workers or max(1, min(2, os.cpu_count() or 1))
        self._landmarkers = []
        with native_stderr_silenced():
            for _ in range(count):
                landmarker = vision.FaceLandmarker.create_from_options(options)
                landmarker.detect(blank_image())  # first call logs too
                self._landmarkers.append(landmarker)
        self._pool = ThreadPoolExecutor(count) if count > 1 else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        with native_stderr_silenced():
            for landmarker in self._landmarkers:
                landmarker.close()

    def estimate(self, rgb: np.ndarray, boxes: np.ndarray) -> MeshResult:
        """Mesh for each xyxy box of an (H, W, 3) uint8 RGB image."""
        n = len(boxes)
        out = MeshResult(
            landmarks=np.full((n, 478, 3), np.nan, np.float32),
            blendshapes=np.full((n, len(BLENDSHAPE_NAMES)), np.nan, np.float32),
            transforms=np.full((n, 4, 4), np.nan, np.float32),
            found=np.zeros(n, bool),
        )
        workers = len(self._landmarkers)
        if self._pool is None or n < 2:
            self._estimate_some(self._landmarkers[0], rgb, boxes, range(n), out)
            return out
        jobs = [self._pool.submit(self._estimate_some, self._landmarkers[k], rgb, boxes, range(k, n, workers), out)
                for k in range(min(workers, n))]
        for job in jobs:
            job.result()
        return out

    @staticmethod
    def _estimate_some(landmarker, rgb: np.ndarray, boxes: np.ndarray, indices, out: MeshResult) -> None:
        """Fill `out` rows `indices` (each landmarker is used by one thread at a time)."""
        import mediapipe as mp

        for i in indices:
            affine = crop_transform(boxes[i])
            crop = cv2.warpAffine(rgb, affine, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT)
            result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop))
            pick = _central_face(result.face_landmarks)
            if pick is None:
                continue
            pts = np.array([[p.x, p.y, p.z] for p in result.face_landmarks[pick]], np.float32)
            s = affine[0, 0]
            pts[:, :2] = (pts[:, :2] * CROP_SIZE - affine[:, 2]) / s
            pts[:, 2] = pts[:, 2] * CROP_SIZE / s
            out.landmarks[i] = pts
            out.blendshapes[i] = [c.score for c in result.face_blendshapes[pick]]
            out.transforms[i] = np.asarray(result.facial_transformation_matrixes[pick], np.float32)
            out.found[i] = True


def _central_face(faces) -> int | None:
    """Index of the face whose landmarks centre lies nearest the crop centre (within 20%)."""
    best, best_dist = None, 0.2
    for i, face in enumerate(faces):
        cx = np.mean([p.x for p in face])
        cy = np.mean([p.y for p in face])
        dist = float(np.hypot(cx - 0.5, cy - 0.5))
        if dist < best_dist:
            best, best_dist = i, dist
    return best
