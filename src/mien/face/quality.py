"""Quality flags: reasons to trust a face's numbers less.

- small_face: the box's shorter side is under `min_side` px (mesh and AUs get unreliable).
- strong_pose: |yaw| > 45 or |pitch| > 30 degrees (frontal-trained models degrade).
- blurry: variance of the Laplacian of the aligned grey crop under `blur_threshold`.
- partial: more than 5% of the mesh lies outside the image, or the box does by > 10%.
- no_mesh: the mesh model found no face in the detection's crop.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_SIDE = 40
MAX_YAW, MAX_PITCH = 45.0, 30.0
BLUR_THRESHOLD = 40.0


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
