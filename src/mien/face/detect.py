"""Face detection with the BlazeFace short-range model from `face_landmarker.task`.

BlazeFace sees its input at 128x128, so on a whole photo it only finds faces larger than about
a tenth of the image. Two modes:

- ``fast``: one pass over the whole image (about 2 ms); right for selfies, video calls, interviews.
- ``thorough``: the same model over an overlapping tile pyramid (whole image, then windows of
  1/2, 1/4 and 1/8 of the longer side at 50% overlap, as far as the image size needs), merged
  with non-maximum suppression; finds small faces in group photos and crowds.
- ``auto``: the whole image and the half-size tiles; when that shows a group (no face, more
  than two, small ones, or faces only the tiles see), the full pyramid.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mien.models import resolve
from mien.models.quiet import native_stderr_silenced

from mien.face.settings import DEFAULT_MIN_SCORE, DetectMode, DetectorOptions  # noqa: F401 (re-exported)
# In auto mode, detections this confident count as evidence of a group photo (whatever --min-score
# keeps as rows): a face scored 0.55 in a half-size tile is reason to search the smaller tiles.
_ESCALATE_SCORE = 0.5
# A face must span at least this share of a tile's longer side to be found reliably there.
_MIN_FACE_SHARE = 0.08
# BlazeFace boxes are about 1.2x wider than WIDER FACE's hand-drawn ones (measured on
# wider_mini); narrow them so boxes follow the common annotation convention.
_BOX_WIDTH_SCALE = 0.83


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy NMS that averages each cluster's boxes, weighted by score (as BlazeFace does).

    The same face seen in several tiles and scales gives several slightly different boxes;
    their weighted mean locates it better than the single best-scoring one. `boxes` may carry
    more columns after the four xyxy ones (averaged the same way).
    Returns merged boxes and their (maximum) scores, best first.
    """
    width = boxes.shape[1] if boxes.ndim == 2 else 4
    order = np.argsort(-scores)
    merged_boxes, merged_scores = [], []
    while len(order):
        overlap = box_iou(boxes[order[0], :4], boxes[order, :4])[0] > iou
        cluster = order[overlap]
        weights = scores[cluster][:, None]
        merged_boxes.append((boxes[cluster] * weights).sum(axis=0) / weights.sum())
        merged_scores.append(scores[cluster].max())
        order = order[~overlap]
    return np.asarray(merged_boxes, np.float32).reshape(-1, width), np.asarray(merged_scores, np.float32)


def pyramid_levels(width: int, height: int, min_window: int = 160) -> list[list[tuple[int, int, int, int]]]:
    """Square windows (x1, y1, x2, y2) of the tile pyramid, one list per level, whole image first.

    Each level halves the window (1/2, 1/4, 1/8 of the longer side) with 50% overlap, so every
    face up to half a window wide lies wholly inside some window; levels stop at `min_window` px.
    """
    levels = [[(0, 0, width, height)]]
    side = max(width, height) // 2
    while side >= min_window:
        stride = side // 2
        xs = _starts(width, side, stride)
        ys = _starts(height, side, stride)
        levels.append([(x, y, min(x + side, width), min(y + side, height)) for y in ys for x in xs])
        side //= 2
    return levels


def tile_windows(width: int, height: int, min_window: int = 160) -> list[tuple[int, int, int, int]]:
    """All windows of `pyramid_levels`, whole image first."""
    return [w for level in pyramid_levels(width, height, min_window) for w in level]


def _starts(length: int, side: int, stride: int) -> list[int]:
    if length <= side:
        return [0]
    starts = list(range(0, length - side, stride))
    return starts + [length - side]


class FaceDetector:
    """Finds faces in RGB images; returns xyxy pixel boxes and scores."""

    def __init__(self, options: DetectorOptions | None = None) -> None:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self.options = options or DetectorOptions()
        with zipfile.ZipFile(resolve("face_landmarker")) as bundle:
            model = bundle.read("face_detector.tflite")
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_buffer=model),
            # Low floor here: the score threshold is applied after merging tiles.
            min_detection_confidence=min(self.options.min_score, 0.3),
            min_suppression_threshold=0.3,
        )
        with native_stderr_silenced():  # loading and the first calls log; warm up on square and wide inputs here,
            # not on the first real images: fd 2 is process-wide, and silencing it mid-run would swallow the
            # lines other threads print (a batch's error lines)
            self._detector = vision.FaceDetector.create_from_options(options)
            for shape in ((64, 64, 3), (480, 640, 3), (667, 1000, 3)):
                self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.full(shape, 128, np.uint8)))

    def close(self) -> None:
        with native_stderr_silenced():
            self._detector.close()

    def detect(self, rgb: np.ndarray, mode: DetectMode | None = None,
               max_levels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Detect faces in an (H, W, 3) uint8 RGB image.

        `max_levels` searches exactly the first levels of the tile pyramid whatever the mode
        (1: whole image, 2: and the half-size tiles...), for callers that budget time per frame.

        Returns:
            boxes (n, 4) float32 xyxy pixels and scores (n,) float32, best first.
        """
        boxes, scores, _ = self.detect_with_roll(rgb, mode, max_levels)
        return boxes, scores

    def detect_with_roll(self, rgb: np.ndarray, mode: DetectMode | None = None,
                         max_levels: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As `detect`, plus each face's roll (n,) float32: the angle in radians of the line from the
        subject's right eye to the left one, from BlazeFace's eye keypoints (0: eyes level)."""
        mode = mode or self.options.mode
        height, width = rgb.shape[:2]
        levels = pyramid_levels(width, height)
        if max_levels is not None:
            return self._finish(*self._detect_windows(rgb, [w for level in levels[:max_levels] for w in level]))
        if mode == "fast":
            levels = levels[:1]
        elif mode == "auto":
            return self._finish(*self._detect_auto(rgb, levels))
        return self._finish(*self._detect_windows(rgb, [w for level in levels for w in level]))

    def centre_face(self, rgb: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The face detected nearest the centre of an image (within 20% of its size), before `min_score`
        and box calibration: (BlazeFace's own xyxy box, roll in radians), or None."""
        boxes, _ = self._detect_windows(rgb, [(0, 0, rgb.shape[1], rgb.shape[0])])
        if not len(boxes):
            return None
        offsets = (boxes[:, :2] + boxes[:, 2:4]) / 2 / [rgb.shape[1], rgb.shape[0]] - 0.5
        distance = np.hypot(offsets[:, 0], offsets[:, 1])
        best = int(np.argmin(distance))
        if distance[best] >= 0.2:
            return None
        return boxes[best, :4], float(np.arctan2(boxes[best, 5], boxes[best, 4]))

    def _detect_auto(self, rgb: np.ndarray, levels) -> tuple[np.ndarray, np.ndarray]:
        """The whole image, then the half-size tiles; if those show any face the whole image
        missed (or only small faces), this is a group photo: the remaining levels too.
        Each window is run once. (Stopping after the whole image for a large face was measured and
        rejected: even a face filling half the shorter side hides other faces in 4 WIDER-mini photos.)"""
        height, width = rgb.shape[:2]
        boxes, scores = self._detect_windows(rgb, levels[0])
        done = 1
        if len(levels) > 1 and self._looks_like_single(boxes, scores, width, height):
            half_boxes, half_scores = self._detect_windows(rgb, levels[1])
            is_group = _new_faces(boxes[:, :4], half_boxes[half_scores >= min(self.options.min_score, _ESCALATE_SCORE), :4])
            boxes, scores = np.concatenate([boxes, half_boxes]), np.concatenate([scores, half_scores])
            done = 2
            if not is_group:
                return boxes, scores
        rest = [w for level in levels[done:] for w in level]
        if rest:
            more_boxes, more_scores = self._detect_windows(rgb, rest)
            boxes, scores = np.concatenate([boxes, more_boxes]), np.concatenate([scores, more_scores])
        return boxes, scores

    def _looks_like_single(self, boxes: np.ndarray, scores: np.ndarray, width: int, height: int) -> bool:
        """One or two confident, large faces: a portrait, not a group."""
        strong = boxes[scores >= min(self.options.min_score, _ESCALATE_SCORE), :4]
        if not 1 <= len(strong) <= 2:
            return False
        sides = np.minimum(strong[:, 2] - strong[:, 0], strong[:, 3] - strong[:, 1])
        return bool(sides.min() >= 0.15 * min(width, height))

    def _detect_windows(self, rgb: np.ndarray, windows) -> tuple[np.ndarray, np.ndarray]:
        """Detections of all windows: (n, 6) xyxy boxes in image pixels with the eye line's (cos, sin), scores."""
        import mediapipe as mp

        height, width = rgb.shape[:2]
        all_boxes, all_scores = [], []
        for x1, y1, x2, y2 in windows:
            tile = np.ascontiguousarray(rgb[y1:y2, x1:x2])
            result = self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=tile))
            for det in result.detections:
                bb = det.bounding_box
                box = np.array([bb.origin_x, bb.origin_y, bb.origin_x + bb.width,
                                bb.origin_y + bb.height], dtype=np.float32)
                if not _inside_tile(box, x2 - x1, y2 - y1, (x1, y1, x2, y2), width, height):
                    continue
                if max(bb.width, bb.height) < _MIN_FACE_SHARE * max(x2 - x1, y2 - y1):
                    continue
                all_boxes.append(np.concatenate([box + [x1, y1, x1, y1], _eye_line(det, x2 - x1, y2 - y1)]))
                all_scores.append(det.categories[0].score)
        if not all_boxes:
            return np.zeros((0, 6), np.float32), np.zeros(0, np.float32)
        return np.stack(all_boxes).astype(np.float32), np.asarray(all_scores, dtype=np.float32)

    def _finish(self, boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        opts = self.options
        if len(boxes):
            boxes, scores = weighted_nms(_calibrate_boxes(boxes), scores, opts.nms_iou)
            keep = scores >= opts.min_score
            boxes, scores = boxes[keep], scores[keep]
        if opts.min_face_size and len(boxes):
            sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            boxes, scores = boxes[sides >= opts.min_face_size], scores[sides >= opts.min_face_size]
        if opts.max_faces is not None:
            boxes, scores = boxes[: opts.max_faces], scores[: opts.max_faces]
        rolls = np.arctan2(boxes[:, 5], boxes[:, 4]).astype(np.float32)
        return np.ascontiguousarray(boxes[:, :4]), scores, rolls


def _eye_line(detection, tile_width: int, tile_height: int) -> np.ndarray:
    """(cos, sin) of the line from the subject's right eye to the left one (BlazeFace keypoints 0 and 1)."""
    points = detection.keypoints or []
    if len(points) < 2:
        return np.array([1.0, 0.0], np.float32)
    dx = (points[1].x - points[0].x) * tile_width
    dy = (points[1].y - points[0].y) * tile_height
    norm = float(np.hypot(dx, dy)) or 1.0
    return np.array([dx / norm, dy / norm], np.float32)


def _new_faces(known: np.ndarray, candidates: np.ndarray) -> bool:
    """True if some candidate box overlaps none of the known boxes."""
    if len(candidates) == 0:
        return False
    if len(known) == 0:
        return True
    return bool((box_iou(candidates, known).max(axis=1) < 0.2).any())


def _inside_tile(box, tile_w, tile_h, window, width, height, margin: int = 2) -> bool:
    """False for boxes cut by an inner tile edge (the face is whole in a neighbouring tile)."""
    x1, y1, x2, y2 = window
    if box[0] < margin and x1 > 0:
        return False
    if box[1] < margin and y1 > 0:
        return False
    if box[2] > tile_w - margin and x2 < width:
        return False
    if box[3] > tile_h - margin and y2 < height:
        return False
    return True


def _calibrate_boxes(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    half = (boxes[:, 2] - boxes[:, 0]) * _BOX_WIDTH_SCALE / 2
    centre = (boxes[:, 0] + boxes[:, 2]) / 2
    out[:, 0], out[:, 2] = centre - half, centre + half
    return out
