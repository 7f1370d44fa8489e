"""Face detection: BlazeFace short-range (from `face_landmarker.task`, `mien.face.blazeface`) and CenterFace
(`mien.face.centerface`).

BlazeFace sees its input at 128x128, so on a whole photo it only finds faces larger than about a tenth of the
image; CenterFace runs at the image's own resolution and finds faces of every size, and turned ones, in one pass.
Modes:

- ``fast``: BlazeFace over the whole image (a few ms); right for selfies, video calls, interviews.
- ``auto``: BlazeFace over the whole image; a portrait (one face of a third to two thirds of the shorter side)
  or a close-up BlazeFace is sure of stops there. Otherwise CenterFace too, on the image shrunk to 960 px at
  most: groups and crowds.
- ``thorough``: BlazeFace over the whole image and half-size tiles (50% overlap), and CenterFace at up to 1280 px.

Detections of the same face are merged; where CenterFace saw a face its box is kept (it follows WIDER FACE's
labels), and its score confirms faces the mesh cannot read. Video and callers that budget time per frame search
a number of levels of BlazeFace's tile pyramid alone (`max_levels`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import cv2
import numpy as np

from mien.face.blazeface import FULL_RANGE, BlazeFace, box_iou, weighted_nms
from mien.face.centerface import CenterFace
from mien.face.settings import DEFAULT_MIN_SCORE, DetectMode, DetectorOptions  # noqa: F401 (re-exported)
# In auto mode, a detection this confident counts as the face of a portrait or close-up (whatever --min-score
# keeps as rows); two such faces make the image a group.
_ESCALATE_SCORE = 0.5
# A face must span at least this share of a tile's longer side to be found reliably there.
_MIN_FACE_SHARE = 0.08
# In auto mode, a portrait is one pass: one confident face spanning this share of the image's shorter side, in
# an image no more elongated than _PORTRAIT_ASPECT (the letterboxed 128 px input keeps enough of it). Larger
# "faces" are often a false box over a scene, more elongated images lose the face's detail (measured on
# WIDER-mini: with these bounds no easy face that auto finds is lost; KDEF and UTKFace portraits all qualify).
_PORTRAIT_SHARE = (0.3, 0.7)
_PORTRAIT_ASPECT = 1.8
# A face filling more of the image is a close-up and one pass when BlazeFace scores it at least this: on WIDER-mini
# the four such photos of one face score 0.88-0.93 and a false box over a meeting room 0.50; 95% of UTKFace's
# chips score above it, half of RAF-CE's aligned crops (the rest get CenterFace too, which finds more of them).
_CLOSE_UP_SCORE = 0.7
# BlazeFace boxes are about 1.2x wider than WIDER FACE's hand-drawn ones (measured on
# wider_mini); narrow them so boxes follow the common annotation convention.
_BOX_WIDTH_SCALE = 0.83
# The second opinion on a face the mesh cannot read: BlazeFace full-range in a square of this many box sides
# around it (where a face is at the small-face scale that network was trained for), and the score it must give.
# Chosen on half of WIDER-mini (even-numbered images) for the most easy faces at row precision >= 0.93.
SECOND_OPINION_SCALE = 8.0
SECOND_OPINION_SCORE = 0.6


# CenterFace's turn (nose offset from the middle of eyes and mouth corners) is about a third of BlazeFace's (nose
# offset from the ears' midpoint) on KDEF's half profiles; scaled to BlazeFace's so one `PROFILE_TURN` serves both.
_CENTERFACE_TURN_SCALE = 3.0
# CenterFace's scores run lower than BlazeFace's: its detections need `min_score` times this (0.4 at the default
# 0.6), where on WIDER-mini its precision matches BlazeFace's at `min_score` (chosen with `CENTERFACE_CONFIRM`).
CENTERFACE_SCORE_RATIO = 2 / 3
# A CenterFace detection and a BlazeFace one of the same face overlap at least this much (CenterFace's boxes
# include the forehead, as WIDER FACE's labels do; BlazeFace's start at the brows).
_SAME_FACE_IOU = 0.3


@dataclass
class Detections:
    """Faces found in one image, best first.

    Attributes:
        boxes: (n, 4) float32 xyxy pixels.
        scores: (n,) float32 detection confidence.
        rolls: (n,) float32 angle in radians of the line from the subject's right eye to the left one.
        turns: (n,) float32 the nose's offset from the middle of the face in box widths (about 0 facing the
            camera, +-0.5 at 45 degrees of yaw; see `FaceDetector.detect_with_pose`).
        confirmed: (n,) float32 CenterFace's score for the face (0 where it did not run or saw none there): a
            second network's confidence, which keeps a face the mesh cannot read as a row.
        centerface_boxes: (n, 4) float32 CenterFace's xyxy box of the face (NaN where `confirmed` is 0); `boxes`
            keeps BlazeFace's where both saw it, the box the mesh stage was tuned with.
    """

    boxes: np.ndarray
    scores: np.ndarray
    rolls: np.ndarray
    turns: np.ndarray
    confirmed: np.ndarray
    centerface_boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    def __add__(self, other: "Detections") -> "Detections":
        """The faces of both, these first."""
        return Detections(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)))

    def apart_from(self, boxes: np.ndarray) -> "Detections":
        """The faces that are none of `boxes` (overlapping each less than the same face would)."""
        if not len(boxes) or not len(self):
            return self
        apart = box_iou(self.boxes, boxes).max(1) < _SAME_FACE_IOU
        return Detections(*(getattr(self, f.name)[apart] for f in fields(self)))


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

    # What runs beyond a portrait, per mode, chosen on WIDER-mini (`benchmarks/detector_wider.py`): CenterFace on the
    # image shrunk to this longer side, and this many levels of BlazeFace's tile pyramid (None: all).
    centerface_side = {"auto": 960, "thorough": 1280}
    pyramid_depth: dict[str, int | None] = {"auto": 1, "thorough": 2}
    centerface = True  # False: BlazeFace alone over the whole pyramid, as before CenterFace (benchmarks only)

    def __init__(self, options: DetectorOptions | None = None) -> None:
        self.options = options or DetectorOptions()
        # Low floor here: the score threshold is applied after merging tiles.
        self._network = BlazeFace(min_score=min(self.options.min_score, 0.3), nms_iou=0.3)
        self._full_range: BlazeFace | None = None  # loaded on first use by `second_opinion`
        self._center: CenterFace | None = None  # loaded on first use beyond portraits

    def close(self) -> None:
        """Nothing to release (kept for callers that close what they open)."""

    def detect(self, rgb: np.ndarray, mode: DetectMode | None = None,
               max_levels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Detect faces in an (H, W, 3) uint8 RGB image.

        `max_levels` searches exactly the first levels of the tile pyramid whatever the mode
        (1: whole image, 2: and the half-size tiles...), for callers that budget time per frame.

        Returns:
            boxes (n, 4) float32 xyxy pixels and scores (n,) float32, best first.
        """
        boxes, scores, _, _ = self.detect_with_pose(rgb, mode, max_levels)
        return boxes, scores

    def detect_with_roll(self, rgb: np.ndarray, mode: DetectMode | None = None,
                         max_levels: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As `detect`, plus each face's roll (n,) float32: the angle in radians of the line from the
        subject's right eye to the left one, from BlazeFace's eye keypoints (0: eyes level)."""
        boxes, scores, rolls, _ = self.detect_with_pose(rgb, mode, max_levels)
        return boxes, scores, rolls

    def detect_with_pose(self, rgb: np.ndarray, mode: DetectMode | None = None, max_levels: int | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """As `detect_with_roll`, plus each face's turn (n,) float32 from the detector's keypoints: the nose tip's
        offset from the middle of the face, in box widths (about 0 facing the camera, +-0.5 at 45 degrees of
        yaw on KDEF's half profiles, negative on its half-left views)."""
        found = self.detect_faces(rgb, mode, max_levels)
        return found.boxes, found.scores, found.rolls, found.turns

    def detect_faces(self, rgb: np.ndarray, mode: DetectMode | None = None,
                     max_levels: int | None = None) -> Detections:
        """All that `detect_with_pose` returns, and CenterFace's confirmation of each face (see `Detections`).

        Beyond a portrait (`auto`) and always in `thorough` mode, CenterFace runs over the whole image beside
        BlazeFace: it finds the small and turned faces of group photos in one pass, where BlazeFace needs a tile
        pyramid. `max_levels` runs BlazeFace alone over exactly that many pyramid levels.
        """
        mode = mode or self.options.mode
        height, width = rgb.shape[:2]
        levels = pyramid_levels(width, height)
        if max_levels is not None:
            return self._finish(*self._detect_windows(rgb, [w for level in levels[:max_levels] for w in level]))
        if mode == "fast":
            return self._finish(*self._detect_windows(rgb, levels[0]))
        if not self.centerface:
            return self._finish(*self._detect_windows(rgb, [w for level in levels for w in level]))
        boxes, scores = self._detect_windows(rgb, levels[0])
        if mode == "auto" and self._is_portrait(boxes, scores, width, height):
            return self._finish(boxes, scores)
        more = [w for level in levels[1:self.pyramid_depth[mode]] for w in level]
        if more:
            more_boxes, more_scores = self._detect_windows(rgb, more)
            boxes, scores = np.concatenate([boxes, more_boxes]), np.concatenate([scores, more_scores])
        return self._finish(boxes, scores, *self._centerface().detect(rgb, self.centerface_side[mode]))

    def detect_turned_over(self, rgb: np.ndarray, mode: DetectMode = "fast", max_levels: int | None = None
                           ) -> Detections:
        """The faces found in the image turned half around (in `fast` mode one BlazeFace pass over the whole image),
        in this image's coordinates, their rolls turned with it: for a photo in which nothing was found the right
        way up (someone lying down, a picture saved upside down), where 35 of KDEF's 238 frontal photos turned over
        find no face, or one in which a face was found upside down (a group photo turned over). `max_levels` as in
        `detect`."""
        height, width = rgb.shape[:2]
        found = self.detect_faces(np.ascontiguousarray(rgb[::-1, ::-1]), mode=mode, max_levels=max_levels)
        flip = np.array([width, height, width, height], np.float32)
        return replace(found, boxes=(flip - found.boxes[:, [2, 3, 0, 1]]).astype(np.float32),
                       centerface_boxes=(flip - found.centerface_boxes[:, [2, 3, 0, 1]]).astype(np.float32),
                       rolls=((found.rolls + 2 * np.pi) % (2 * np.pi) - np.pi).astype(np.float32))

    def centre_face(self, rgb: np.ndarray) -> tuple[np.ndarray, float, float] | None:
        """The face detected nearest the centre of an image (within 20% of its size), before `min_score`
        and box calibration: (BlazeFace's own xyxy box, roll in radians, score), or None."""
        boxes, scores = self._detect_windows(rgb, [(0, 0, rgb.shape[1], rgb.shape[0])])
        if not len(boxes):
            return None
        offsets = (boxes[:, :2] + boxes[:, 2:4]) / 2 / [rgb.shape[1], rgb.shape[0]] - 0.5
        distance = np.hypot(offsets[:, 0], offsets[:, 1])
        best = int(np.argmin(distance))
        if distance[best] >= 0.2:
            return None
        return boxes[best, :4], float(np.arctan2(boxes[best, 5], boxes[best, 4])), float(scores[best])

    def second_opinion(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(n,) score BlazeFace full-range gives each xyxy box's face (0 where it sees none there).

        A different network, at a different scale: a face that the mesh cannot read (a profile, a covered or
        tiny face) but that this one confirms is kept as a row; a pattern that fooled the short-range model once
        rarely fools this one too.
        """
        if self._full_range is None:
            self._full_range = BlazeFace(min_score=0.3, nms_iou=0.3, variant=FULL_RANGE)
        side_px = FULL_RANGE.input_side
        out = np.zeros(len(boxes), np.float32)
        for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float32).reshape(-1, 4)):
            scale = side_px / (SECOND_OPINION_SCALE * max(x2 - x1, y2 - y1, 1.0))
            centre = np.array([x1 + x2, y1 + y2]) / 2
            matrix = np.array([[scale, 0.0, side_px / 2 - centre[0] * scale], [0.0, scale, side_px / 2 - centre[1] * scale]])
            crop = cv2.warpAffine(rgb, matrix, (side_px, side_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            rows, scores = self._full_range.detect(crop)
            if not len(rows):
                continue
            half = np.array([x2 - x1, y2 - y1]) * scale / 2
            expected = np.concatenate([side_px / 2 - half, side_px / 2 + half])
            overlapping = box_iou(expected, rows[:, :4])[0] > 0.3
            if overlapping.any():
                out[i] = scores[overlapping].max()
        return out

    def _is_portrait(self, boxes: np.ndarray, scores: np.ndarray, width: int, height: int) -> bool:
        """One confident face of portrait size in an image of ordinary proportions (see `_PORTRAIT_SHARE`)."""
        confident = scores >= min(self.options.min_score, _ESCALATE_SCORE)
        strong = boxes[confident, :4]
        if len(strong) != 1 or max(width, height) > _PORTRAIT_ASPECT * min(width, height):
            return False
        share = min(strong[0, 2] - strong[0, 0], strong[0, 3] - strong[0, 1]) / min(width, height)
        if share > _PORTRAIT_SHARE[1]:  # a close-up (a face chip, a dataset crop), if BlazeFace is sure of it
            return bool(scores[confident][0] >= _CLOSE_UP_SCORE)
        return bool(_PORTRAIT_SHARE[0] <= share)

    def _detect_windows(self, rgb: np.ndarray, windows) -> tuple[np.ndarray, np.ndarray]:
        """Detections of all windows: (n, 7) xyxy boxes in image pixels with the eye line's (cos, sin) and the
        turn (see `detect_with_pose`), scores."""
        height, width = rgb.shape[:2]
        all_boxes, all_scores = [], []
        for x1, y1, x2, y2 in windows:
            whole = (x1, y1, x2, y2) == (0, 0, width, height)
            rows, scores = self._network.detect(rgb if whole else np.ascontiguousarray(rgb[y1:y2, x1:x2]))
            for row, score in zip(rows, scores):
                box = _whole_pixels(row[:4], x2 - x1, y2 - y1)
                if not _inside_tile(box, x2 - x1, y2 - y1, (x1, y1, x2, y2), width, height):
                    continue
                if max(box[2] - box[0], box[3] - box[1]) < _MIN_FACE_SHARE * max(x2 - x1, y2 - y1):
                    continue
                all_boxes.append(np.concatenate([box + [x1, y1, x1, y1], _eye_line(row), [_turn(row)]]))
                all_scores.append(score)
        if not all_boxes:
            return np.zeros((0, 7), np.float32), np.zeros(0, np.float32)
        return np.stack(all_boxes).astype(np.float32), np.asarray(all_scores, dtype=np.float32)

    def _finish(self, boxes: np.ndarray, scores: np.ndarray, extra_boxes: np.ndarray | None = None,
                extra_scores: np.ndarray | None = None) -> Detections:
        """Merge BlazeFace's rows (n, 7) across windows, add CenterFace's (`extra_*`, same layout), apply the
        options' score, size and count limits."""
        opts = self.options
        if len(boxes):
            boxes, scores = weighted_nms(_calibrate_boxes(boxes), scores, opts.nms_iou)
            keep = scores >= opts.min_score
            boxes, scores = boxes[keep], scores[keep]
        confirmed = np.zeros(len(boxes), np.float32)
        seen = np.full((len(boxes), 4), np.nan, np.float32)
        if extra_boxes is not None and extra_scores is not None and len(extra_boxes):
            extra_boxes = extra_boxes.copy()
            extra_boxes[:, 6] *= _CENTERFACE_TURN_SCALE
            same = box_iou(extra_boxes[:, :4], boxes[:, :4]) >= _SAME_FACE_IOU
            for i, j in zip(*np.nonzero(same)):
                if extra_scores[i] > confirmed[j]:
                    confirmed[j], seen[j] = extra_scores[i], extra_boxes[i, :4]
            new = ~same.any(1) & (extra_scores >= opts.min_score * CENTERFACE_SCORE_RATIO)
            boxes = np.concatenate([boxes, extra_boxes[new]])
            scores = np.concatenate([scores, extra_scores[new]])
            confirmed = np.concatenate([confirmed, extra_scores[new]])
            seen = np.concatenate([seen, extra_boxes[new, :4]])
            order = np.argsort(-scores, kind="stable")
            boxes, scores, confirmed, seen = boxes[order], scores[order], confirmed[order], seen[order]
        keep = np.ones(len(boxes), bool)
        if opts.min_face_size:
            keep = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= opts.min_face_size
        if opts.max_faces is not None:
            keep &= np.cumsum(keep) <= opts.max_faces
        boxes, scores, confirmed, seen = boxes[keep], scores[keep], confirmed[keep], seen[keep]
        rolls = np.arctan2(boxes[:, 5], boxes[:, 4]).astype(np.float32)
        return Detections(np.ascontiguousarray(boxes[:, :4]), scores, rolls, np.ascontiguousarray(boxes[:, 6]),
                          confirmed, seen)

    def _centerface(self) -> CenterFace:
        if self._center is None:
            self._center = CenterFace()
        return self._center


def _whole_pixels(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """The box as MediaPipe's detector reports it, which every threshold here was tuned with: origin and size
    each truncated to whole pixels and bounded by the image (so a face cut by the border keeps its size)."""
    origin = np.clip(np.trunc(box[:2]), 0, [width, height])
    size = np.clip(np.trunc(box[2:] - box[:2]), 0, [width, height])
    return np.concatenate([origin, origin + size]).astype(np.float32)


def _eye_line(row: np.ndarray) -> np.ndarray:
    """(cos, sin) of the line from the subject's right eye to the left one (BlazeFace keypoints 0 and 1)."""
    dx, dy = row[6] - row[4], row[7] - row[5]
    norm = float(np.hypot(dx, dy)) or 1.0
    return np.array([dx / norm, dy / norm], np.float32)


def _turn(row: np.ndarray) -> float:
    """The nose tip's offset from the ears' midpoint in box widths (BlazeFace keypoints 2, 4 and 5)."""
    width = max(float(row[2] - row[0]), 1e-6)
    return float((row[8] - (row[12] + row[14]) / 2) / width)


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
