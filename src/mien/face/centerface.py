"""CenterFace: an anchor-free face detector for faces of every size in one pass over the whole image.

The network (Xu et al. 2020, "CenterFace: Joint Face Detection and Alignment Using Face as Point"; trained on
WIDER FACE) predicts, on a grid of stride 4, a heatmap of face centres, each centre's offset within its cell, the
log of the face's size (in units of 4 px) and five landmarks relative to the box. It runs at the image's own
resolution (padded to a multiple of 32), so a face of 10 px is found in the same pass as one of 1000 px: where
BlazeFace needs a tile pyramid, this needs one forward pass. OpenCV's dnn module runs the ONNX file at any input size.
"""

from __future__ import annotations

import cv2
import numpy as np

from mien.face.blazeface import weighted_nms
from mien.models import resolve

_STRIDE = 4
_OUTPUTS = ("537", "538", "539", "540")  # centre heatmap, log sizes (h, w), offsets (y, x), landmarks (y, x) x 5
# Images larger than this (longer side, px) are shrunk before the pass: the cost grows with the pixel count, and a
# face below a few pixels at this size has too little detail for the mesh anyway.
MAX_SIDE = 1280


class CenterFace:
    """CenterFace detections as rows (n, 7): xyxy box in image pixels, the eye line's (cos, sin) and the turn
    (the nose's offset from the middle of the eyes and mouth corners, in box widths), with scores (n,)."""

    def __init__(self, min_score: float = 0.3, nms_iou: float = 0.3, max_side: int = MAX_SIDE) -> None:
        self.min_score, self.nms_iou, self.max_side = min_score, nms_iou, max_side
        self._net = cv2.dnn.readNetFromONNX(str(resolve("face_detector_centerface")))

    def detect(self, rgb: np.ndarray, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Detect faces in an (H, W, 3) uint8 RGB image, shrunk first to `max_side` px (default: the instance's);
        rows best first (see the class)."""
        height, width = rgb.shape[:2]
        scale = min(1.0, (max_side or self.max_side) / max(height, width))
        image = rgb if scale == 1.0 else cv2.resize(rgb, (round(width * scale), round(height * scale)),
                                                    interpolation=cv2.INTER_AREA)
        pad_h, pad_w = (-image.shape[0]) % 32, (-image.shape[1]) % 32
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        self._net.setInput(cv2.dnn.blobFromImage(image))
        heat, sizes, offsets, marks = self._net.forward(list(_OUTPUTS))
        ys, xs = np.nonzero(heat[0, 0] > self.min_score)
        if not len(ys):
            return np.zeros((0, 7), np.float32), np.zeros(0, np.float32)
        box_h, box_w = np.exp(sizes[0, 0, ys, xs]) * _STRIDE, np.exp(sizes[0, 1, ys, xs]) * _STRIDE
        centre_y = (ys + offsets[0, 0, ys, xs] + 0.5) * _STRIDE
        centre_x = (xs + offsets[0, 1, ys, xs] + 0.5) * _STRIDE
        left, top = centre_x - box_w / 2, centre_y - box_h / 2
        points_x = left[:, None] + marks[0, 1::2][:, ys, xs].T * box_w[:, None]  # (n, 5): eyes, nose, mouth corners
        points_y = top[:, None] + marks[0, 0::2][:, ys, xs].T * box_h[:, None]
        rows = np.column_stack([left, top, left + box_w, top + box_h, _eye_line(points_x, points_y),
                                (points_x[:, 2] - points_x[:, [0, 1, 3, 4]].mean(1)) / box_w])
        rows[:, :4] /= scale
        rows[:, :4] = np.clip(rows[:, :4], 0, [width, height, width, height])
        return weighted_nms(rows.astype(np.float32), heat[0, 0, ys, xs].astype(np.float32), self.nms_iou)


def _eye_line(points_x: np.ndarray, points_y: np.ndarray) -> np.ndarray:
    """(n, 2) (cos, sin) of the line from the subject's right eye (the image's left) to the left one."""
    dx, dy = points_x[:, 1] - points_x[:, 0], points_y[:, 1] - points_y[:, 0]
    norm = np.hypot(dx, dy)
    norm[norm == 0] = 1.0
    return np.column_stack([dx / norm, dy / norm])
