"""Aligned face crops: a similarity transform puts eyes, nose tip and mouth corners in place.

The template is the widely used 5-point layout for 112x112 face crops, loosened by `margin` so
brows, forehead and chin stay in view (they carry expression). Crops are what mien's expression
model sees, so training and inference share this exact function.
"""

from __future__ import annotations

import cv2
import numpy as np

# Five points on a 112x112 crop: image-left eye, image-right eye, nose tip, mouth corners.
_TEMPLATE_112 = np.array(
    [[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]], np.float32
)
# Mesh indices: eye corners (subject's right eye is image-left), nose tip, mouth corners.
_RIGHT_EYE, _LEFT_EYE, _NOSE_TIP, _MOUTH = (33, 133), (263, 362), 1, (61, 291)
ALIGN_SIZE = 112
ALIGN_MARGIN = 0.2


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) alignment points from one face's (478, 3) landmarks."""
    pts = landmarks[:, :2]
    return np.stack([
        pts[list(_RIGHT_EYE)].mean(0), pts[list(_LEFT_EYE)].mean(0), pts[_NOSE_TIP],
        pts[_MOUTH[0]], pts[_MOUTH[1]],
    ]).astype(np.float32)


def template(size: int = ALIGN_SIZE, margin: float = ALIGN_MARGIN, shift: float | None = None) -> np.ndarray:
    """(5, 2) destination points for a `size` px crop.

    margin > 0 zooms out around the centre, margin < 0 zooms in; `shift` moves the face down
    (> 0) or up (< 0) as a fraction of the crop, by default down a little with the margin so the
    forehead fits as well as the chin.
    """
    unit = _TEMPLATE_112 / 112.0
    unit = (unit - 0.5) / (1.0 + margin) + 0.5
    unit[:, 1] += 0.04 * margin / 0.2 if shift is None else shift
    return unit * size


def align_matrix(landmarks: np.ndarray, size: int = ALIGN_SIZE, margin: float = ALIGN_MARGIN,
                 shift: float | None = None) -> np.ndarray:
    """2x3 similarity transform from image pixels to the aligned crop."""
    matrix, _ = cv2.estimateAffinePartial2D(five_points(landmarks), template(size, margin, shift), method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("alignment failed: degenerate landmarks")
    return matrix


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = ALIGN_SIZE,
               margin: float = ALIGN_MARGIN, shift: float | None = None) -> np.ndarray:
    """(size, size, 3) uint8 aligned crop of one face from an RGB image and its landmarks."""
    matrix = align_matrix(landmarks, size, margin, shift)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
