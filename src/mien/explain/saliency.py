"""Occlusion heatmaps: which parts of the face the expression model relied on.

Gradient-free, so it works on the shipped ONNX model: a patch of the 48x48 expression crop is
replaced by a blurred copy of itself (detail removed, brightness kept, so the input stays
face-like), for every patch position; the heatmap at a pixel is the mean drop in the explained
class's probability over the patches that covered it. One batch of 121 crops through the
classifier: about 0.1 s per face on two cores. Deterministic: same face, same heatmap.
"""

from __future__ import annotations

import cv2
import numpy as np

from mien.expression.classifier import ExpressionClassifier
from mien.explain.regions import crop_matrix

PATCH = 8
STRIDE = 4


def occlusion_heatmap(classifier: ExpressionClassifier, crop: np.ndarray, blendshapes: np.ndarray,
                      target: int | None = None, patch: int = PATCH, stride: int = STRIDE) -> tuple[np.ndarray, int]:
    """(heatmap (S, S) float32 >= 0, explained class index) for one (S, S) grey or (S, S, 3) RGB uint8
    expression crop. Patch and stride are given for 48 px crops and scale with S.

    `target` is the class to explain (default: the predicted one). The blendshapes stay as they
    are, so the heatmap shows what the image path adds.
    """
    size = crop.shape[0]
    patch, stride = max(2, round(patch * size / 48)), max(1, round(stride * size / 48))
    blurred = cv2.GaussianBlur(crop, (0, 0), 4)
    starts = range(0, size - patch + 1, stride)
    boxes = [(y, x) for y in starts for x in starts]
    batch = np.repeat(crop[None], len(boxes) + 1, axis=0)
    for k, (y, x) in enumerate(boxes, start=1):
        batch[k, y:y + patch, x:x + patch] = blurred[y:y + patch, x:x + patch]
    probs = classifier.predict(batch, np.repeat(np.asarray(blendshapes, np.float32)[None], len(batch), axis=0))
    if target is None:
        target = int(probs[0].argmax())
    drop = np.maximum(probs[0, target] - probs[1:, target], 0.0)
    heat = np.zeros((size, size), np.float32)
    count = np.zeros((size, size), np.float32)
    for (y, x), d in zip(boxes, drop):
        heat[y:y + patch, x:x + patch] += d
        count[y:y + patch, x:x + patch] += 1
    return heat / np.maximum(count, 1), target


def heatmap_to_image(heatmap: np.ndarray, landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The crop heatmap warped back onto the original image (H, W), zero outside the face."""
    matrix = cv2.invertAffineTransform(crop_matrix(landmarks, heatmap.shape[0]))
    return cv2.warpAffine(heatmap, matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB image with a heatmap (same H, W; scaled by its maximum) drawn over it in a colour map."""
    scaled = np.sqrt(heat / heat.max()) if heat.max() > 0 else heat  # sqrt: weaker evidence stays visible
    colours = cv2.cvtColor(cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    weight = (alpha * scaled)[..., None]
    return (rgb * (1 - weight) + colours * weight).astype(np.uint8)
