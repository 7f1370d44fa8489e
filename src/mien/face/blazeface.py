"""BlazeFace run by ai-edge-litert, in two variants:

- short-range, the face detector inside `face_landmarker.task` (128x128 input, faces within ~2 m);
- full-range, MediaPipe's `face_detection_full_range.tflite` (192x192 input, faces up to ~5 m; vendored from the
  npm package `@mediapipe/face_detection`, see `mien.models.sources`).

Decoded as MediaPipe's face detection graphs decode them, without MediaPipe:
- the image is letterboxed into the square input (the longer side fits, the rest is black), sampled at the points
  and with the rounding MediaPipe's OpenCV uses (`letterbox_maps`), values scaled to [-1, 1];
- SSD anchors of fixed size, centres at (i + 0.5) / grid. Short-range: 896, a 16x16 grid with 2 anchors per
  cell (stride 8) and an 8x8 grid with 6 per cell (strides 16, 16, 16). Full-range: 2304, a 48x48 grid with one
  anchor per cell (stride 4);
- each anchor regresses a box centre and size and 6 keypoints (eyes, nose tip, mouth, ears: the
  subject's right one first) in input pixels, offset from its centre; scores are sigmoids of clipped logits;
- weighted non-maximum suppression (each cluster's boxes and keypoints averaged by score).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from mien.models import resolve
from mien.models.quiet import native_stderr_silenced

N_KEYPOINTS = 6
_SCORE_CLIP = 100.0
_SUBPIXELS = 32  # OpenCV's INTER_TAB_SIZE: sample points on a 1/32-pixel grid


@dataclass(frozen=True)
class Variant:
    """One BlazeFace network: where its file is and how its anchors are laid out (MediaPipe's graph options)."""

    model: str  # its name in `mien.models`
    member: str | None  # the network's file inside that model's bundle, if it is one
    input_side: int
    strides: tuple[int, ...]
    anchors_per_layer: int  # 2: aspect ratio 1 and the interpolated scale; 1: aspect ratio 1 only

    def model_bytes(self) -> bytes:
        if self.member is None:
            return resolve(self.model).read_bytes()
        with zipfile.ZipFile(resolve(self.model)) as bundle:
            return bundle.read(self.member)


SHORT_RANGE = Variant("face_landmarker", "face_detector.tflite", 128, (8, 16, 16, 16), 2)
FULL_RANGE = Variant("face_detector_full_range", None, 192, (4,), 1)


@lru_cache(maxsize=32)
def letterbox_maps(height: int, width: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point `cv2.remap` maps that letterbox an image of `height` x `width` into `side` x `side`: the square
    of the longer side, centred, as MediaPipe's ImageToTensor frames it (its corners through
    `getPerspectiveTransform`), each sample at the 1/32-pixel point OpenCV's classic `warpPerspective` computes (in
    blocks 64 wide). MediaPipe's own OpenCV build samples this way, with 15-bit bilinear weights; pip's OpenCV 5
    interpolates in floating point, which moved detection scores by up to 2e-3 and keypoints by up to a pixel. With
    these maps `cv2.remap` gives MediaPipe's input exactly, and the detections agree with its FaceDetector to 1e-6."""
    longer = float(max(height, width))
    corners = cv2.boxPoints(((width / 2, height / 2), (longer, longer), 0.0)).astype(np.float32)
    square = np.array([[0, side], [0, 0], [side, 0], [side, side]], np.float32)
    m = cv2.invert(cv2.getPerspectiveTransform(corners, square))[1].ravel()  # input pixel -> image pixel
    rows, columns = np.mgrid[0:side, 0:side].astype(np.float64)
    block = (columns // 64) * 64
    within = columns - block
    scale = _SUBPIXELS / (m[6] * block + m[7] * rows + m[8] + m[6] * within)
    x = np.rint((m[0] * block + m[1] * rows + m[2] + m[0] * within) * scale).astype(np.int64)
    y = np.rint((m[3] * block + m[4] * rows + m[5] + m[3] * within) * scale).astype(np.int64)
    whole = np.stack([x >> 5, y >> 5], -1).astype(np.int16)
    fraction = ((y & (_SUBPIXELS - 1)) * _SUBPIXELS + (x & (_SUBPIXELS - 1))).astype(np.uint16)
    return whole, fraction


@lru_cache(maxsize=2)
def anchor_centres(variant: Variant = SHORT_RANGE) -> np.ndarray:
    """(n, 2) anchor centres (x, y) in [0, 1] of the input, in the network's output order."""
    centres = []
    layer, strides = 0, variant.strides
    while layer < len(strides):
        stride, per_cell = strides[layer], 0
        while layer < len(strides) and strides[layer] == stride:  # layers of one stride share a grid
            per_cell += variant.anchors_per_layer
            layer += 1
        grid = -(-variant.input_side // stride)
        ys, xs = np.mgrid[0:grid, 0:grid]
        cells = np.stack([(xs.ravel() + 0.5) / grid, (ys.ravel() + 0.5) / grid], 1)
        centres.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy NMS that averages each cluster's rows, weighted by score (as BlazeFace does).

    The same face seen in several tiles and scales gives several slightly different boxes; their
    weighted mean locates it better than the single best-scoring one. `boxes` may carry more columns
    after the four xyxy ones (keypoints, averaged the same way). Returns merged rows and their
    (maximum) scores, best first.
    """
    width = boxes.shape[1] if boxes.ndim == 2 else 4
    order = np.argsort(-scores, kind="stable")
    merged_boxes, merged_scores = [], []
    while len(order):
        overlap = box_iou(boxes[order[0], :4], boxes[order, :4])[0] > iou
        cluster = order[overlap]
        weights = scores[cluster][:, None]
        merged_boxes.append((boxes[cluster] * weights).sum(axis=0) / weights.sum())
        merged_scores.append(scores[cluster].max())
        order = order[~overlap]
    return np.asarray(merged_boxes, np.float32).reshape(-1, width), np.asarray(merged_scores, np.float32)


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


class BlazeFace:
    """One BlazeFace network on one thread (an instance is not thread-safe).

    Args:
        min_score: detections scoring below this are dropped before suppression.
        nms_iou: detections overlapping more than this IoU are merged.
        variant: `SHORT_RANGE` (default) or `FULL_RANGE`.
    """

    def __init__(self, min_score: float = 0.5, nms_iou: float = 0.3, variant: Variant = SHORT_RANGE) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.min_score, self.nms_iou, self.variant = min_score, nms_iou, variant
        with native_stderr_silenced():  # LiteRT announces its CPU delegate on fd 2
            self._net = Interpreter(model_content=variant.model_bytes(), num_threads=1)
            self._net.allocate_tensors()
        self._input = self._net.get_input_details()[0]["index"]
        outputs = {d["shape"][-1]: d["index"] for d in self._net.get_output_details()}
        self._boxes_out, self._scores_out = outputs[4 + 2 * N_KEYPOINTS], outputs[1]

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces in an (H, W, 3) uint8 RGB image.

        Returns:
            rows (n, 16) float32: the xyxy box then the 6 keypoints' (x, y), in the image's pixels;
            scores (n,) float32, best first.
        """
        height, width = rgb.shape[:2]
        input_side = self.variant.input_side
        side = float(max(height, width))
        # The square of the longer side, centred on the image, fills the input (letterbox).
        left, top = (width - side) / 2, (height - side) / 2
        tensor = cv2.remap(rgb, *letterbox_maps(height, width, input_side), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        self._net.set_tensor(self._input, (tensor[None].astype(np.float32) / 127.5 - 1.0))
        self._net.invoke()
        logits = self._net.get_tensor(self._scores_out)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -_SCORE_CLIP, _SCORE_CLIP)))
        keep = np.flatnonzero(scores >= self.min_score)
        if not len(keep):
            return np.zeros((0, 4 + 2 * N_KEYPOINTS), np.float32), np.zeros(0, np.float32)
        raw = self._net.get_tensor(self._boxes_out)[0, keep] / input_side
        centres = anchor_centres(self.variant)[keep]
        middle, size = raw[:, :2] + centres, raw[:, 2:4]
        points = raw[:, 4:].reshape(-1, N_KEYPOINTS, 2) + centres[:, None]
        rows = np.concatenate([middle - size / 2, middle + size / 2, points.reshape(len(keep), -1)], 1)
        rows, merged = weighted_nms(rows, scores[keep].astype(np.float32), self.nms_iou)
        rows = rows * side + np.tile([left, top], 2 + N_KEYPOINTS)  # input units -> image pixels
        return rows.astype(np.float32), merged
