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
from mien.face.settings import ALIGN_SIZE  # noqa: F401 (re-exported)
ALIGN_MARGIN = 0.2


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) alignment points from one face's (478, 3) landmarks."""
    pts = landmarks[:, :2]
    return np.stack([
        pts[list(_RIGHT_EYE)].mean(0), pts[list(_LEFT_EYE)].mean(0), pts[_NOSE_TIP],
        pts[_MOUTH[0]], pts[_MOUTH[1]],
    ]).astype(np.float32)


def _framing(size: int, margin: float, shift: float | None) -> tuple[float, float, float]:
    """(scale, x offset, y offset) taking the unit template (`template(1, 0, 0)`) to `template(size, margin, shift)`."""
    shift = 0.04 * margin / 0.2 if shift is None else shift
    scale = 1.0 / (1.0 + margin)
    return scale * size, (0.5 - 0.5 * scale) * size, (0.5 - 0.5 * scale + shift) * size


def template(size: int = ALIGN_SIZE, margin: float = ALIGN_MARGIN, shift: float | None = None) -> np.ndarray:
    """(5, 2) destination points for a `size` px crop.

    margin > 0 zooms out around the centre, margin < 0 zooms in; `shift` moves the face down
    (> 0) or up (< 0) as a fraction of the crop, by default down a little with the margin so the
    forehead fits as well as the chin.
    """
    scale, dx, dy = _framing(size, margin, shift)
    return (_TEMPLATE_112 / 112.0 * scale + [dx, dy]).astype(np.float32)


def unit_matrix(landmarks: np.ndarray) -> np.ndarray:
    """2x3 similarity transform from image pixels to the unit template (a 1 px crop, no margin).

    Every crop of a face derives from it (`align_matrix(..., unit=)`): the robust fit runs once per face,
    not once per crop (the derived transforms match direct fits to ~1e-5 px).
    """
    matrix, _ = cv2.estimateAffinePartial2D(five_points(landmarks), _TEMPLATE_112 / 112.0, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("alignment failed: degenerate landmarks")
    return matrix


def align_matrix(landmarks: np.ndarray, size: int = ALIGN_SIZE, margin: float = ALIGN_MARGIN,
                 shift: float | None = None, unit: np.ndarray | None = None) -> np.ndarray:
    """2x3 similarity transform from image pixels to the aligned crop; `unit` is the face's `unit_matrix`
    when the caller has it."""
    unit = unit_matrix(landmarks) if unit is None else unit
    scale, dx, dy = _framing(size, margin, shift)
    return unit * scale + np.array([[0.0, 0.0, dx], [0.0, 0.0, dy]])


def align_face(rgb: np.ndarray, landmarks: np.ndarray, size: int = ALIGN_SIZE, margin: float = ALIGN_MARGIN,
               shift: float | None = None, unit: np.ndarray | None = None) -> np.ndarray:
    """(size, size, 3) uint8 aligned crop of one face from an RGB image and its landmarks (`unit`: its
    `unit_matrix`, if already computed)."""
    matrix = align_matrix(landmarks, size, margin, shift, unit)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
