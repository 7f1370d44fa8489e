"""Quality flags: reasons to trust a face's numbers less.

- small_face: the box's shorter side is under `min_side` px (mesh and AUs get unreliable).
- strong_pose: |yaw| > 45 or |pitch| > 30 degrees (frontal-trained models degrade).
- blurry: variance of the Laplacian of the aligned grey crop under `blur_threshold`.
- partial: more than 5% of the mesh lies outside the image, or the box does by > 10%.
- no_mesh: the mesh model found no face in the detection's crop (the row is kept where CenterFace scores the face
  at least `CENTERFACE_CONFIRM` or BlazeFace full-range confirms it: see `FaceDetector.second_opinion`); no mesh,
  pose, AUs or expression.
- profile: a face without a mesh whose detector keypoints say the head is turned about 45 degrees or more (the
  nose tip `PROFILE_TURN` box widths or more from the middle of the face): a profile the mesh cannot read.
- occluded: part of the face is covered (mask, scarf, hand in a glove, an object): one of five
  skin regions (forehead, nose, both cheeks, chin) differs in colour from the others by more than
  `OCCLUSION_THRESHOLD` (CIELAB distance, lightness at half weight so shading counts less).
  The mesh still predicts points under an occluder, so its numbers there are guesses. A bare
  hand of the same skin tone is not seen, and a full beard can look like a covered chin.
"""

from __future__ import annotations

import cv2
import numpy as np

# Names of the quality flags, in the order of `Faces.flags` columns.
QUALITY_FLAGS = ("small_face", "strong_pose", "blurry", "partial", "no_mesh", "occluded", "profile")
MIN_SIDE = 40
MAX_YAW, MAX_PITCH = 45.0, 30.0
BLUR_THRESHOLD = 40.0
OCCLUSION_THRESHOLD = 30.0
# KDEF (detector keypoints, 5th-95th percentiles): frontal photos -0.05..0.04, half profiles (45 degrees) 0.42..0.57.
PROFILE_TURN = 0.4

# Mesh vertices in skin areas of the 478-point MediaPipe face mesh.
SKIN_REGIONS = {
    "forehead": (10, 67, 109, 338, 297, 151, 108, 337, 69, 299),
    "nose": (6, 197, 195, 5, 4, 168),
    "right_cheek": (50, 101, 118, 117, 123, 187, 205, 36, 142, 126, 47),  # the subject's right
    "left_cheek": (280, 330, 347, 346, 352, 411, 425, 266, 371, 355, 277),
    "chin": (152, 175, 199, 200, 18, 313, 406, 83, 182, 421, 201, 208, 428, 377, 148, 176, 400),
}
_SAMPLE_SIDE = 64  # faces are sampled at about this many pixels across
_SKIN_POINTS = [i for indices in SKIN_REGIONS.values() for i in indices]
_SKIN_SPANS = [(a, a + len(v)) for a, v in zip(np.cumsum([0] + [len(v) for v in SKIN_REGIONS.values()]),
                                               SKIN_REGIONS.values())]


def sharpness(aligned: np.ndarray) -> float:
    """Variance of the Laplacian of an aligned RGB crop (higher is sharper)."""
    grey = cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def outside_share(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n,) share of mesh points outside the image."""
    x, y = landmarks[:, :, 0], landmarks[:, :, 1]
    outside = (x < 0) | (y < 0) | (x >= width) | (y >= height)
    return outside.mean(axis=1)


def box_outside_share(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n,) share of each box's area outside the image."""
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    inner_w = np.clip(np.minimum(boxes[:, 2], width) - np.maximum(boxes[:, 0], 0), 0, None)
    inner_h = np.clip(np.minimum(boxes[:, 3], height) - np.maximum(boxes[:, 1], 0), 0, None)
    return 1.0 - inner_w * inner_h / area


def occlusion_scores(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(n, len(SKIN_REGIONS)) colour distance of each skin region from the face's typical skin.

    Each region's colour is the median CIELAB colour at its mesh points (on a slightly blurred
    copy of the face, about 64 px wide); the face's typical skin is the median over regions.
    Distances: sqrt(dL^2 / 4 + da^2 + db^2). NaN rows for faces without a mesh.
    """
    out = np.full((len(landmarks), len(SKIN_REGIONS)), np.nan, np.float32)
    height, width = rgb.shape[:2]
    sampled, rows_of = [], []
    for i, pts in enumerate(landmarks):
        if np.isnan(pts).any():
            continue
        x0, y0 = np.floor(pts[:, :2].min(0)).astype(int)
        x1, y1 = np.ceil(pts[:, :2].max(0)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1 + 1, width), min(y1 + 1, height)
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        scale = min(1.0, _SAMPLE_SIDE / (x1 - x0))
        face = cv2.GaussianBlur(cv2.resize(rgb[y0:y1, x0:x1], None, fx=scale, fy=scale,
                                           interpolation=cv2.INTER_AREA), (3, 3), 0)
        h, w = face.shape[:2]
        xy = np.rint((pts[_SKIN_POINTS, :2] - [x0, y0]) * scale).astype(int)
        colours = face[np.clip(xy[:, 1], 0, h - 1), np.clip(xy[:, 0], 0, w - 1)]
        # Only the sampled pixels go to CIELAB (as one 1-row image): the same values as converting the face.
        sampled.append(cv2.cvtColor(colours[None].astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[0])
        rows_of.append(i)
    if not sampled:
        return out
    lab = np.stack(sampled)  # (faces, points, 3)
    regions = np.stack([np.median(lab[:, a:b], axis=1) for a, b in _SKIN_SPANS], 1)  # (faces, regions, 3)
    diff = regions - np.median(regions, axis=1, keepdims=True)
    out[rows_of] = np.sqrt(diff[..., 0] ** 2 / 4 + diff[..., 1] ** 2 + diff[..., 2] ** 2)
    return out
