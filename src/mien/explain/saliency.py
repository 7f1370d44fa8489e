"""Occlusion heatmaps: which parts of the face the expression model relied on.

Gradient-free, so it works on the shipped ONNX model: a patch of the expression crop is replaced by a
blurred copy of itself (detail removed, brightness kept, so the input stays face-like), for every patch
position; the heatmap at a pixel is the mean drop in the explained class's probability over the patches
that covered it. Patch and stride scale with the crop (a 21 px patch every 11 px of the shipped model's
128 px crop: 100 positions), so one face is one batch of 101 crops through the float network, about 0.3 s
per face on two cores. Deterministic: same face, same heatmap. Scoring the drop in log-probability or
log-odds instead, or running the int8 network, was measured and not adopted (benchmarks/RESULTS.md).
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
    return occlusion_heatmaps(classifier, [crop], np.asarray(blendshapes, np.float32)[None], [target], patch, stride)[0]


def occlusion_heatmaps(classifier: ExpressionClassifier, crops: list[np.ndarray], blendshapes: np.ndarray,
                       targets: list[int | None] | None = None, patch: int = PATCH,
                       stride: int = STRIDE) -> list[tuple[np.ndarray, int]]:
    """`occlusion_heatmap` for several faces at once: all their occluded copies go through the
    classifier as one batch (one ONNX call per photo instead of one per face)."""
    if not crops:
        return []
    size = crops[0].shape[0]
    patch, stride = max(2, round(patch * size / 48)), max(1, round(stride * size / 48))
    starts = range(0, size - patch + 1, stride)
    boxes = [(y, x) for y in starts for x in starts]
    per_face = len(boxes) + 1
    batch = np.repeat(np.stack(crops), per_face, axis=0)
    for f, crop in enumerate(crops):
        blurred = cv2.GaussianBlur(crop, (0, 0), 4)
        for k, (y, x) in enumerate(boxes, start=1):
            batch[f * per_face + k, y:y + patch, x:x + patch] = blurred[y:y + patch, x:x + patch]
    blend = np.repeat(np.asarray(blendshapes, np.float32).reshape(len(crops), -1), per_face, axis=0)
    probs = classifier.predict(batch, blend).reshape(len(crops), per_face, -1)
    count = np.zeros((size, size), np.float32)
    for y, x in boxes:
        count[y:y + patch, x:x + patch] += 1
    out = []
    for f in range(len(crops)):
        target = (targets or [None] * len(crops))[f]
        target = int(probs[f, 0].argmax()) if target is None else target
        drop = np.maximum(probs[f, 0, target] - probs[f, 1:, target], 0.0)
        heat = np.zeros((size, size), np.float32)
        for (y, x), d in zip(boxes, drop):
            heat[y:y + patch, x:x + patch] += d
        out.append((heat / np.maximum(count, 1), target))
    return out


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
