"""478-point mesh, 52 blendshapes and the facial transformation matrix, per detected face.

MediaPipe's mesh network runs on a square region around each face (1.5x its box, turned so the
eyes are level) and its blendshape network on the mesh's points (`mien.face.mesh_net`); the
canonical face fitted to the mesh gives the transformation matrix (`mien.face.geometry`).

The region of a face not followed from an earlier frame comes, as in MediaPipe's FaceLandmarker,
from a second detection inside a 1.9x crop around mien's box (BlazeFace then sees the face at 256
px instead of as a small part of a whole photo, and its box and eye keypoints frame the face
well). A confident detection whose own region already shows a clear, well-framed face skips that
step (most one-face photos). A followed face's region comes from its mesh in the previous frame,
moved by the tracker's predicted motion, as MediaPipe's video mode frames it. A box whose region
shows no face (presence below `min_confidence`) is reported with `no_mesh`.

Faces turned past a quarter turn (a person lying down, a camera the other way up): BlazeFace finds them but reads
them as upright, and the mesh fits whatever it is given with full presence, so it would mesh them upside down.
A detection scoring below 0.85 (or rolled more than 60 degrees) is therefore looked at again in its crop turned
by its roll and by a quarter, half and three-quarter turn more, and framed from the way up BlazeFace sees it
best (`_upright_region`; MediaPipe's FaceLandmarker has no such step).

With several faces the work is shared among `workers` threads (LiteRT runs the networks in parallel).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Iterable

import cv2
import numpy as np

from mien.face.blendshapes import BLENDSHAPE_NAMES
from mien.face.geometry import facial_transforms
from mien.face.mesh_net import (INPUT_SIDE, N_LANDMARKS, ROI_SCALE, MeshNetworks, Region, region_from_box,
                                region_from_landmarks)

if TYPE_CHECKING:
    from mien.face.detect import FaceDetector

# One face's work: row, box, detector roll, region from its last mesh (or None), presence floor,
# whether mien's box may frame it without a second detection.
# (row, box, roll, region of a followed face, presence floor, may keep its own region, close-up score floor,
#  whether to look at it every way up)
_Job = tuple[int, np.ndarray, float, "Region | None", float, bool, float, bool]

# How the mesh is made, in every output's provenance (and batch fingerprint): outputs of another way differ.
PIPELINE = ("face_landmarker.task mesh + blendshape networks on LiteRT; region from a second BlazeFace "
            "detection in a 1.9x crop, or mien's box where that shows presence >= 0.9; detections scoring < 0.85 "
            "or rolled > 60 degrees framed by BlazeFace in that crop turned whichever way up it sees the face "
            "best (a photo with no face found, and a photo or video detection frame with a face meshed upside "
            "down, searched again turned over); pose: canonical face, weighted orthographic Procrustes")

# Face presence the mesh network must report in the region of a weak detection (see `estimate(strict=...)`).
STRICT_PRESENCE = 0.8
# ... and the score the detector must give it seen up close (in the crop below, where a face is at BlazeFace's
# best scale): lettering and patterns can fool the mesh there but rarely the detector twice.
STRICT_CLOSE_UP_SCORE = 0.6  # WIDER-mini rows: precision 0.947 -> 0.958, easy recall unchanged
# A face cut by the image border shows only part of itself up close as well (the crop is padded with black), so
# there the detector need only find it again, at any score.
_BORDER_SHARE = 0.1
# The crop around mien's box in which the face is detected again (side / box side), at the mesh's input size.
SEARCH_SCALE = 1.9
# A confident detection keeps the region of its own box when the mesh there shows this much presence and
# agrees with the region the mesh itself gives within: centre offset (share of the side), side ratio, roll.
QUICK_PRESENCE = 0.9
_QUICK_OFFSET, _QUICK_SCALE, _QUICK_ANGLE = 0.12, 1.3, np.radians(15)
# BlazeFace finds faces turned beyond ~100 degrees (a person lying down, a camera the other way up) but reads them
# as upright faces, eyes at the mouth, and the mesh then fits them upside down with full presence. Such detections
# score 0.60-0.83 (117 UTKFace faces turned 100-260 degrees; 44% of upright UTKFace chips and 4 of 714 KDEF photos
# score below 0.85, with 0.8 the bundled portrait turned 210 degrees would be missed), so those below this, of at
# least `UPSIDE_DOWN_MIN_SIDE` px, are looked at again every way up (`_upright_region`).
UPSIDE_DOWN_MAX_SCORE = 0.85
# The score in the crop turned by the detection's own roll at which the face counts as upright without looking
# at the other ways up (the one look most upright faces cost).
CLEARLY_UPRIGHT = 0.85
UPSIDE_DOWN_MIN_SIDE = 40
# Detections rolled further than this are looked at every way up whatever their score, and framed from the crop
# turned their way (BlazeFace's keypoints, and CenterFace's, are rough there).
STEEP_ROLL = np.radians(60)
# A way up is taken only where BlazeFace sees the face in it clearly (0.83-0.93 for 95% of 120 UTKFace faces turned
# 100-260 degrees; lettering in a title shot, `pyfeat_no_face.mp4`, seen sideways: 0.78) and upright by its own
# keypoints (a profile scored 0.83 a quarter turn from upright, its keypoints there 76 degrees off; a face midway
# between two quarters is 45 degrees off in both).
TURNED_MIN_SCORE = 0.8
UPRIGHT_IN_CROP = np.radians(60)
# A mesh whose eyes' line is tilted further than this (degrees) shows a face upside down in the image: the photo
# may be turned over, and its other faces are then looked for that way up too (`Analyzer.analyze_loaded`, and
# `VideoAnalyzer.locate` on detection frames).
UPSIDE_DOWN_TILT = 120.0
_RIGHT_EYE_CORNER, _LEFT_EYE_CORNER = 33, 263  # outer corners: the subject's right eye and left eye


@dataclass
class MeshResult:
    """Mesh outputs for n boxes; rows of failed faces are NaN and `found` is False."""

    landmarks: np.ndarray  # (n, 478, 3) pixels
    blendshapes: np.ndarray  # (n, 52)
    transforms: np.ndarray  # (n, 4, 4) canonical face (cm) to camera space
    found: np.ndarray  # (n,) bool

    def __add__(self, other: "MeshResult") -> "MeshResult":
        """The faces of both, these first."""
        return MeshResult(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)))

    def upside_down(self) -> np.ndarray:
        """(n,) True for meshes whose eyes lie more than `UPSIDE_DOWN_TILT` from level (the face's top below)."""
        eyes = self.landmarks[:, _LEFT_EYE_CORNER, :2] - self.landmarks[:, _RIGHT_EYE_CORNER, :2]
        tilt = np.degrees(np.abs(np.arctan2(eyes[:, 1], eyes[:, 0])))
        return np.asarray(self.found & (np.nan_to_num(tilt) > UPSIDE_DOWN_TILT), bool)


class MeshEstimator:
    """Mesh, blendshapes and pose for face boxes.

    Args:
        min_confidence: minimum face presence in a face's region.
        workers: networks run in parallel on frames with several faces (default: up to 2 cores).
    """

    def __init__(self, min_confidence: float = 0.3, workers: int | None = None) -> None:
        from mien.face.detect import FaceDetector
        from mien.face.settings import DetectorOptions

        self._min_confidence = min_confidence
        count = workers or max(1, min(2, os.cpu_count() or 1))
        # Per thread: the networks and a detector for the second detection (neither is thread-safe).
        self._workers = [(MeshNetworks(), FaceDetector(DetectorOptions(mode="fast", min_score=min_confidence)))
                         for _ in range(count)]
        self._pool = ThreadPoolExecutor(count) if count > 1 else None
        self._previous: dict[int, np.ndarray] = {}  # track key -> its last mesh (478, 3)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        for _, detector in self._workers:
            detector.close()
        self.forget_followers()

    def forget_followers(self) -> None:
        """Forget every followed face's last mesh: what follows starts with no memory of earlier frames
        (a new video or chunk gives the same results whatever was processed before it)."""
        self._previous = {}

    def release_all_but(self, keys: Iterable[int]) -> None:
        """Forget the last mesh of every track key not in `keys`."""
        keep = {int(k) for k in keys}
        self._previous = {k: v for k, v in self._previous.items() if k in keep}

    def estimate(self, rgb: np.ndarray, boxes: np.ndarray, rolls: np.ndarray | None = None,
                 keys: np.ndarray | None = None, predicted: np.ndarray | None = None,
                 strict: np.ndarray | None = None, face_images: bool = False,
                 scores: np.ndarray | None = None) -> MeshResult:
        """Mesh for each xyxy box of an (H, W, 3) uint8 RGB image.

        `rolls` (radians per box, as `FaceDetector.detect_with_roll` gives them) turns each region so
        the face reaches the network upright; without them faces are taken as upright.

        Video: `keys` gives a track id per box (-1 for none). Where `predicted` (bool per box) is
        set, the box is the tracker's prediction of that face's mesh extent, and the region comes from
        the face's mesh in the previous frame (see `remember`) moved by the predicted motion.
        `strict` (bool per box): boxes whose region must show a clear face (presence >=
        `STRICT_PRESENCE`), for weak detections. `face_images`: each box is a whole image that is a
        face crop (a dataset's): framed by a second detection where it finds the face (as the
        landmarker framed the faces mien's models were trained on), else by the box itself.
        `scores` (the detector's, per box): a new face detected with a lower score than `UPSIDE_DOWN_MAX_SCORE`,
        or rolled more than `STEEP_ROLL`, is looked at every way up and framed the way BlazeFace sees it best.
        """
        n = len(boxes)
        out = MeshResult(
            landmarks=np.full((n, N_LANDMARKS, 3), np.nan, np.float32),
            blendshapes=np.full((n, len(BLENDSHAPE_NAMES)), np.nan, np.float32),
            transforms=np.full((n, 4, 4), np.nan, np.float32),
            found=np.zeros(n, bool),
        )
        keys = np.full(n, -1) if keys is None else np.asarray(keys)
        rolls = np.zeros(n) if rolls is None else np.asarray(rolls)
        jobs: list[_Job] = []
        for i in range(n):
            weak = strict is not None and bool(strict[i])
            floor = STRICT_PRESENCE if weak else self._min_confidence
            followed = self._followed_region(boxes[i], int(keys[i]), bool(predicted is not None and predicted[i]))
            # Only confident detections may keep their own box's region without a second detection.
            quick = not face_images and not weak
            close_up_score = STRICT_CLOSE_UP_SCORE if weak and not _at_border(boxes[i], rgb.shape) else 0.0
            side = max(float(boxes[i][2] - boxes[i][0]), float(boxes[i][3] - boxes[i][1]))
            may_be_turned = (scores is not None and not face_images and side >= UPSIDE_DOWN_MIN_SIDE
                             and (float(scores[i]) < UPSIDE_DOWN_MAX_SCORE or _steep(float(rolls[i]))))
            jobs.append((i, boxes[i], float(rolls[i]), followed, floor, quick, close_up_score, may_be_turned))
        lanes = [jobs[k::len(self._workers)] for k in range(min(n, len(self._workers)))]
        if self._pool is None or len(lanes) < 2:
            for worker, lane in zip(self._workers, lanes):
                self._run_lane(worker, rgb, lane, face_images, out)
        else:
            for future in [self._pool.submit(self._run_lane, worker, rgb, lane, face_images, out)
                           for worker, lane in zip(self._workers, lanes)]:
                future.result()
        if out.found.any():
            out.transforms[out.found] = facial_transforms(out.landmarks[out.found], rgb.shape[:2])
        return out

    def remember(self, keys: np.ndarray, landmarks: np.ndarray) -> None:
        """Keep each track key's (478, 3) mesh of this frame, to frame that face in the next one (a face seen without
        a mesh is framed afresh from its next detection)."""
        for key, points in zip(keys, landmarks):
            if key >= 0 and np.isfinite(points[0, 0]):
                self._previous[int(key)] = points
            elif key >= 0:
                self._previous.pop(int(key), None)

    def _followed_region(self, box: np.ndarray, key: int, predicted: bool) -> Region | None:
        """The region of a followed face from its last mesh (None for a face not followed)."""
        last = self._previous.get(key) if key >= 0 else None
        if last is None:
            return None
        region = region_from_landmarks(last)
        if not predicted:  # a new detection of the face: where it was last frame, as MediaPipe's video mode
            return region
        extent = mesh_boxes(last[None])[0]
        dx = (box[0] + box[2] - extent[0] - extent[2]) / 2
        dy = (box[1] + box[3] - extent[1] - extent[3]) / 2
        return replace(region, cx=region.cx + float(dx), cy=region.cy + float(dy))

    @staticmethod
    def _run_lane(worker: tuple[MeshNetworks, FaceDetector], rgb: np.ndarray, jobs: list[_Job],
                  face_images: bool, out: MeshResult) -> None:
        networks, detector = worker
        for i, box, roll, followed, floor, quick, close_up_score, may_be_turned in jobs:
            if followed is not None:
                points, presence = networks.mesh(rgb, followed)
            elif may_be_turned and (upright := _upright_region(detector, rgb, box, roll)) is not None:
                points, presence = networks.mesh(rgb, upright)
            else:
                own = region_from_box(box, roll)
                points, presence = networks.mesh(rgb, own)
                settled = quick and presence >= QUICK_PRESENCE and not _badly_framed(own, region_from_landmarks(points))
                if not settled:
                    detected = _detected_region(detector, rgb, box, close_up_score)
                    if detected is None and not face_images:
                        continue  # no face for the detector seen up close either
                    if detected is not None:
                        again, presence_again = networks.mesh(rgb, detected)
                        # The detection's framing (the landmarker's, which mien's models were trained on);
                        # a face crop keeps its box's own where only that one shows a face. (In photos that
                        # fallback adds WIDER-mini faces but also false ones: precision 0.949 -> 0.935.)
                        if not face_images or presence_again >= floor or presence_again >= presence:
                            points, presence = again, presence_again
            if presence < floor:
                continue
            out.landmarks[i] = points
            out.blendshapes[i] = networks.blendshapes(points)
            out.found[i] = True


def _upright_region(detector: FaceDetector, rgb: np.ndarray, box: np.ndarray, roll: float) -> Region | None:
    """The region of a face framed by BlazeFace in a 1.9x crop around `box` (at the mesh's input size) turned by
    `roll` or a quarter, half or three-quarter turn more, whichever way up it sees the face best; None where that is
    `roll`'s own way and `roll` is within `STEEP_ROLL` of upright (the usual framing then stands), or where the best
    way up scores below `TURNED_MIN_SCORE`. A way up counts only where BlazeFace's keypoints in that crop show the
    face within `UPRIGHT_IN_CROP` of upright."""
    best = None
    for quarter in range(4):
        search, crop = _search_crop(rgb, box, roll + quarter * np.pi / 2)
        found = detector.centre_face(crop)
        # A way up counts where BlazeFace's own keypoints also show the face upright in it.
        if found is not None and abs(found[1]) <= UPRIGHT_IN_CROP and (best is None or found[2] > best[0][2]):
            best = (found, search, quarter)
        if quarter == 0 and best is not None and best[0][2] >= CLEARLY_UPRIGHT:
            break  # clearly upright in this crop: no need to look further
    if best is None or best[0][2] < TURNED_MIN_SCORE or (best[2] == 0 and not _steep(roll)):
        return None
    ((x1, y1, x2, y2), crop_roll, _), search, _ = best
    back = cv2.invertAffineTransform(search.to_crop())
    cx, cy = back @ np.array([(x1 + x2) / 2, (y1 + y2) / 2, 1.0])
    return Region(float(cx), float(cy), ROI_SCALE * max(x2 - x1, y2 - y1) * search.side / INPUT_SIDE,
                  search.angle + crop_roll)


def _search_crop(rgb: np.ndarray, box: np.ndarray, angle: float = 0.0) -> tuple[Region, np.ndarray]:
    """The 1.9x region around `box`, turned by `angle`, and its crop at the mesh's input size (where BlazeFace sees a
    face at its best scale)."""
    side = SEARCH_SCALE * max(box[2] - box[0], box[3] - box[1])
    search = Region((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, side, angle)
    crop = cv2.warpAffine(rgb, search.to_crop(), (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)
    return search, crop


def _steep(roll: float) -> bool:
    return bool(abs((roll + np.pi) % (2 * np.pi) - np.pi) > STEEP_ROLL)


def _detected_region(detector: FaceDetector, rgb: np.ndarray, box: np.ndarray,
                     min_score: float = 0.0) -> Region | None:
    """The face's region from a second detection in a 1.9x crop around `box` (None: no face there, or none
    scoring `min_score`)."""
    search, crop = _search_crop(rgb, box)
    found = detector.centre_face(crop)
    if found is None or found[2] < min_score:
        return None
    (x1, y1, x2, y2), roll, _ = found
    scale = search.side / INPUT_SIDE
    return Region(search.cx + ((x1 + x2) / 2 - INPUT_SIDE / 2) * scale, search.cy + ((y1 + y2) / 2 - INPUT_SIDE / 2) * scale,
                  ROI_SCALE * max(x2 - x1, y2 - y1) * scale, roll)


def _at_border(box: np.ndarray, shape: tuple[int, ...]) -> bool:
    """True when the box reaches within a tenth of its side of the image's edge (the face may be cut there)."""
    margin = _BORDER_SHARE * max(float(box[2] - box[0]), float(box[3] - box[1]))
    height, width = shape[:2]
    return bool(box[0] < margin or box[1] < margin or box[2] > width - margin or box[3] > height - margin)


def _badly_framed(used: Region, fitted: Region) -> bool:
    """True when the region a mesh was found in differs much from the one the mesh itself gives."""
    offset = np.hypot(used.cx - fitted.cx, used.cy - fitted.cy) / max(fitted.side, 1.0)
    ratio = max(used.side, 1.0) / max(fitted.side, 1.0)
    turn = abs((used.angle - fitted.angle + np.pi) % (2 * np.pi) - np.pi)
    return bool(offset > _QUICK_OFFSET or not 1 / _QUICK_SCALE < ratio < _QUICK_SCALE or turn > _QUICK_ANGLE)


def mesh_boxes(landmarks: np.ndarray) -> np.ndarray:
    """(n, 4) float32 xyxy extent of each (478, 3) mesh: mien's face box (NaN rows where no mesh).

    The mesh's extent follows the face more closely than the detector's box: on WIDER-mini it
    matches the hand-drawn boxes at IoU >= 0.5 for 92% of detections against 89% (mean IoU 0.75
    against 0.66; `benchmarks/detector_wider.py`).
    """
    x, y = landmarks[:, :, 0], landmarks[:, :, 1]
    return np.stack([x.min(1), y.min(1), x.max(1), y.max(1)], 1).reshape(-1, 4).astype(np.float32)


def face_boxes(landmarks: np.ndarray, found: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """(n, 4) float32 rows' boxes: the mesh's extent where a mesh was `found`, the `detected` box elsewhere."""
    return np.where(found[:, None], mesh_boxes(landmarks), detected).astype(np.float32)
