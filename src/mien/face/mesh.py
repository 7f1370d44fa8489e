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

N_LANDMARKS = 478  # points of MediaPipe's face mesh (468 face + 10 iris)

CROP_SIZE = 256
CROP_SCALE = 1.9
# Face presence the landmarker must see in the crop of a weak detection (see `estimate(strict=...)`);
# MediaPipe's own default, used for the others, is `min_confidence` (0.3).
STRICT_PRESENCE = 0.8


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
        max_tracked: most faces followed at once in video mode (see `estimate`).
    """

    def __init__(self, min_confidence: float = 0.3, workers: int | None = None, max_tracked: int = 16) -> None:
        self._min_confidence = min_confidence
        count = workers or max(1, min(2, os.cpu_count() or 1))
        self._landmarkers = [self._create(video=False) for _ in range(count)]
        self._pool = ThreadPoolExecutor(count) if count > 1 else None
        # Made here, not when first needed: loading silences fd 2, which mid-run would swallow other threads' lines.
        self._strict = self._create(video=False, presence=STRICT_PRESENCE)  # for weak detections
        self._followers: dict[int, list] = {}  # track key -> [VIDEO-mode landmarker, last timestamp ms]
        self._spare: list = []
        self._max_tracked = max_tracked

    def _create(self, video: bool, presence: float | None = None):
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(resolve("face_landmarker"))),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_faces=1 if video else 2,
            min_face_detection_confidence=self._min_confidence,
            min_face_presence_confidence=presence or self._min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        with native_stderr_silenced():
            landmarker = vision.FaceLandmarker.create_from_options(options)
            if not video:
                landmarker.detect(blank_image(CROP_SIZE))  # first call logs too
        return landmarker

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self.forget_followers()
        with native_stderr_silenced():
            for landmarker in self._landmarkers + [self._strict]:
                landmarker.close()

    def forget_followers(self) -> None:
        """Close every video-mode landmarker: what follows starts with no memory of earlier frames
        (a new video or chunk gives the same results whatever was processed before it)."""
        with native_stderr_silenced():
            for landmarker in self._spare + [f[0] for f in self._followers.values()]:
                landmarker.close()
        self._followers, self._spare = {}, []

    def release_all_but(self, keys) -> None:
        """Stop following every track key not in `keys` (their landmarkers are kept for new tracks)."""
        keep = {int(k) for k in keys}
        for key in [k for k in self._followers if k not in keep]:
            follower = self._followers.pop(int(key), None)
            if follower is not None:
                self._spare.append(follower[0])

    def estimate(self, rgb: np.ndarray, boxes: np.ndarray, keys: np.ndarray | None = None,
                 time_s: float | None = None, strict: np.ndarray | None = None) -> MeshResult:
        """Mesh for each xyxy box of an (H, W, 3) uint8 RGB image.

        Video mode: with `keys` (a track id per box, -1 for none) and the frame's `time_s`, each
        tracked face keeps its own landmarker in MediaPipe's video mode, which follows the face
        from the previous frame's landmarks instead of detecting it again in the crop (~1.7 ms
        less per face). Boxes without a key use the image-mode landmarkers.
        `strict` (bool per box): boxes without a key whose mesh must show a clear face (landmarker
        presence >= `STRICT_PRESENCE`), for weak detections.
        """
        n = len(boxes)
        out = MeshResult(
            landmarks=np.full((n, 478, 3), np.nan, np.float32),
            blendshapes=np.full((n, len(BLENDSHAPE_NAMES)), np.nan, np.float32),
            transforms=np.full((n, 4, 4), np.nan, np.float32),
            found=np.zeros(n, bool),
        )
        # Work per landmarker: a landmarker is used by one thread at a time.
        work: dict[int, tuple[object, list[int], int | None]] = {}
        stateless = []
        strict_rows = []
        for i in range(n):
            follower = self._follower(int(keys[i])) if keys is not None and keys[i] >= 0 and time_s is not None else None
            if follower is None:
                (strict_rows if strict is not None and strict[i] else stateless).append(i)
                continue
            stamp = max(int(time_s * 1000), follower[1] + 1)  # strictly increasing per landmarker
            follower[1] = stamp
            work[id(follower[0])] = (follower[0], [i], stamp)
        for k, landmarker in enumerate(self._landmarkers):
            rows = stateless[k::len(self._landmarkers)]
            if rows:
                work[id(landmarker)] = (landmarker, rows, None)
        if strict_rows:
            work[id(self._strict)] = (self._strict, strict_rows, None)
        jobs = list(work.values())
        if self._pool is None or len(jobs) < 2:
            for landmarker, rows, stamp in jobs:
                self._estimate_some(landmarker, rgb, boxes, rows, stamp, out)
            return out
        workers = len(self._landmarkers)
        lanes = [jobs[k::workers] for k in range(workers)]
        futures = [self._pool.submit(self._run_lane, lane, rgb, boxes, out) for lane in lanes if lane]
        for future in futures:
            future.result()
        return out

    def _follower(self, key: int) -> list | None:
        if key not in self._followers:
            if len(self._followers) >= self._max_tracked:
                return None
            landmarker = self._spare.pop() if self._spare else self._create(video=True)
            self._followers[key] = [landmarker, -1]
        return self._followers[key]

    def _run_lane(self, lane, rgb, boxes, out) -> None:
        for landmarker, rows, stamp in lane:
            self._estimate_some(landmarker, rgb, boxes, rows, stamp, out)

    @staticmethod
    def _estimate_some(landmarker, rgb: np.ndarray, boxes: np.ndarray, indices, stamp: int | None,
                       out: MeshResult) -> None:
        """Fill `out` rows `indices`; `stamp` (ms) for a video-mode landmarker, None for image mode."""
        import mediapipe as mp

        for i in indices:
            affine = crop_transform(boxes[i])
            crop = cv2.warpAffine(rgb, affine, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT)
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=crop)
            faces, shapes, matrices = landmarker_arrays(landmarker, image, stamp)
            pick = _central_face(faces)
            if pick is None:
                continue
            pts = faces[pick]
            s = affine[0, 0]
            pts[:, :2] = (pts[:, :2] * CROP_SIZE - affine[:, 2]) / s
            pts[:, 2] = pts[:, 2] * CROP_SIZE / s
            out.landmarks[i] = pts
            out.blendshapes[i] = shapes[pick]
            out.transforms[i] = matrices[pick]
            out.found[i] = True


def _public_arrays(landmarker, image, stamp: int | None):
    """(landmarks, blendshapes, matrices) per face through the Tasks API's public result objects."""
    result = landmarker.detect(image) if stamp is None else landmarker.detect_for_video(image, stamp)
    return ([np.array([(p.x, p.y, p.z) for p in face], np.float32) for face in result.face_landmarks],
            [np.array([c.score for c in face], np.float32) for face in result.face_blendshapes],
            [np.asarray(m, np.float32) for m in result.facial_transformation_matrixes])


def _struct_fields(struct, names: tuple[str, ...]) -> np.dtype:
    """numpy view of some float fields of a ctypes struct array (offsets from ctypes itself)."""
    import ctypes

    return np.dtype({"names": list(names), "formats": [np.float32] * len(names),
                     "offsets": [getattr(struct, n).offset for n in names], "itemsize": ctypes.sizeof(struct)})


def _direct_arrays(landmarker, image, stamp: int | None):
    """As `_public_arrays`, read straight from the C result with numpy: MediaPipe's Python result objects
    cost ~0.9 ms per face (478 landmark objects), a sixth of a one-face image's budget."""
    import ctypes

    from mediapipe.tasks.python.components.containers.category_c import MpCategoryC
    from mediapipe.tasks.python.components.containers.landmark_c import MpNormalizedLandmarkC
    from mediapipe.tasks.python.vision.face_landmarker import MpFaceLandmarkerResultC

    result = MpFaceLandmarkerResultC()
    lib, handle = landmarker._lib, landmarker._handle  # the Tasks API's own handles (mediapipe < 2)
    if stamp is None:
        lib.MpFaceLandmarkerDetectImage(handle, image._image_ptr, None, ctypes.byref(result))
    else:
        lib.MpFaceLandmarkerDetectForVideo(handle, image._image_ptr, None, stamp, ctypes.byref(result))
    try:
        point, score = _struct_fields(MpNormalizedLandmarkC, ("x", "y", "z")), _struct_fields(MpCategoryC, ("score",))
        faces, shapes, matrices = [], [], []
        for k in range(result.face_landmarks_count):
            marks = result.face_landmarks[k]
            raw = ctypes.string_at(marks.landmarks, marks.landmarks_count * point.itemsize)
            values = np.frombuffer(raw, point)
            faces.append(np.stack([values["x"], values["y"], values["z"]], 1).astype(np.float32))
        for k in range(result.face_blendshapes_count):
            categories = result.face_blendshapes[k]
            raw = ctypes.string_at(categories.categories, categories.categories_count * score.itemsize)
            shapes.append(np.frombuffer(raw, score)["score"].astype(np.float32))
        for k in range(result.facial_transformation_matrixes_count):
            matrices.append(np.asarray(result.facial_transformation_matrixes[k].to_numpy(), np.float32))
    finally:
        lib.MpFaceLandmarkerCloseResult(ctypes.byref(result))
    return faces, shapes, matrices


def landmarker_arrays(landmarker, image, stamp: int | None = None):
    """(landmarks (478, 3), blendshape scores (52,), transformation matrices (4, 4)) per face the
    landmarker finds in `image`; `stamp` (ms) in video mode. Reads the C result directly where this
    MediaPipe has the expected internals, else through the public result objects."""
    global landmarker_arrays_direct
    if landmarker_arrays_direct:
        try:
            return _direct_arrays(landmarker, image, stamp)
        except (AttributeError, ImportError, TypeError):
            landmarker_arrays_direct = False  # another MediaPipe layout: the public API from now on
    return _public_arrays(landmarker, image, stamp)


def _direct_reading_checked() -> bool:
    """Reading the C result directly relies on MediaPipe's internal layout: only on the 1.2 releases it was
    checked against (`tests/test_pipeline.py`); any other version uses the public API."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mediapipe").startswith("1.2.")
    except PackageNotFoundError:
        return False


landmarker_arrays_direct = _direct_reading_checked()


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


def _central_face(faces: list[np.ndarray]) -> int | None:
    """Index of the face whose (478, 3) normalised landmarks centre lies nearest the crop centre (within 20%)."""
    best, best_dist = None, 0.2
    for i, face in enumerate(faces):
        cx, cy = face[:, 0].mean(), face[:, 1].mean()
        dist = float(np.hypot(cx - 0.5, cy - 0.5))
        if dist < best_dist:
            best, best_dist = i, dist
    return best
