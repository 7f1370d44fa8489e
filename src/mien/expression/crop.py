"""The face crop the expression model sees: aligned, grayscale, 48x48.

Training and inference both call `expression_crop`, so a face in a photo reaches the model
framed exactly like the training faces. The crop is the standard 5-point template zoomed in
1.2x and moved up, framed like FER+ faces (brows to chin fill the crop, little forehead and
background), so the 48 px go to the face. Aligning at twice the size and then area-resizing
keeps large faces from aliasing.
"""

from __future__ import annotations

import cv2
import numpy as np

from mien.face.align import align_face, unit_matrix

EXPR_SIZE = 48
EXPR_MARGIN = 1 / 1.2 - 1  # zoom in 1.2x
EXPR_SHIFT = -0.09  # and move the face up by 9% of the crop
# Stored with every model and training cache made from these crops, and checked when they are used.
CROP_FRAMING = {"input_size": EXPR_SIZE, "align_margin": EXPR_MARGIN, "align_shift": EXPR_SHIFT}


# How a model whose input is larger than the faces it was trained on renders each crop (stored in its metadata
# as `render`): the training faces were 96 px crops (RAF-DB, AffectNet: about 100 px images) or 48 px ones (FER+:
# 48 px images), upscaled to the input. A face is rendered at the side of the training faces nearest its own
# resolution (48 px below `threshold` px of image across the crop, else 96), then upscaled the same way, so a
# small face gets no detail the model never saw and a large one no sharper crop than it trained on.
RENDER_RULE = {"sides": [48, 96], "threshold": 72}


def crop_native_px(unit: np.ndarray) -> float:
    """How many image pixels the expression crop spans, from the face's `mien.face.align.unit_matrix`."""
    scale = float(np.sqrt(abs(np.linalg.det(unit[:, :2]))))
    return (1.0 + EXPR_MARGIN) / max(scale, 1e-9)


def render_side(native_px: float, rule: dict) -> int:
    """The side at which a face spanning `native_px` image pixels is rendered under `rule` (`RENDER_RULE`)."""
    low, high = rule["sides"]
    return int(low if native_px < rule["threshold"] else high)


def expression_crop(rgb: np.ndarray, landmarks: np.ndarray, size: int = EXPR_SIZE, colour: bool = False,
                    unit: np.ndarray | None = None, render: int | None = None) -> np.ndarray:
    """(size, size) uint8 grayscale (or, with `colour`, (size, size, 3) RGB) aligned crop from an
    (H, W, 3) RGB image and (478, 3) landmarks, framed like FER+ faces (`unit`: the face's
    `mien.face.align.unit_matrix`, if already computed). With `render` smaller than `size`, the crop is made
    at that side and upscaled (see `RENDER_RULE`)."""
    side = size if render is None else min(render, size)
    aligned = align_face(rgb, landmarks, side * 2, EXPR_MARGIN, EXPR_SHIFT, unit)
    if not colour:
        aligned = cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY)
    crop = cv2.resize(aligned, (side, side), interpolation=cv2.INTER_AREA)
    return crop if side == size else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def resize_crops(crops: np.ndarray, size: int, render: int | None = None) -> np.ndarray:
    """Crops (n, S, S[, 3]) at `size` px, first shrunk to `render` px if that is smaller (as `expression_crop`
    renders a face of that resolution); the training and evaluation side of `RENDER_RULE`."""
    if render is not None and render < crops.shape[1]:
        crops = np.stack([cv2.resize(c, (render, render), interpolation=cv2.INTER_AREA) for c in crops])
    if crops.shape[1] != size:
        crops = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])
    return crops


def fallback_crop(rgb: np.ndarray, size: int = EXPR_SIZE, colour: bool = False) -> np.ndarray:
    """Crop for an image that already is a tight face crop but has no mesh: resized whole image."""
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, 2)
    image = rgb if colour else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


MIN_MESH_INPUT = 96


def mesh_face_image(mesh, rgb: np.ndarray):
    """(image the mesh ran on, its MeshResult) for an image that already is a face crop: the whole
    image is the box, small images upscaled to 96 px first (the mesh needs some resolution)."""
    h, w = rgb.shape[:2]
    scale = max(1.0, MIN_MESH_INPUT / min(h, w))
    big = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC) if scale > 1 else rgb
    return big, mesh.estimate(big, np.array([[0, 0, big.shape[1], big.shape[0]]], np.float64), face_images=True)


def crop_from_face_image(mesh, rgb: np.ndarray, size: int = EXPR_SIZE, colour: bool = False,
                         render_rule: dict | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Expression crop and blendshapes for an image that already is a face crop (FER+, AffectNet, RAF-DB).

    The mesh runs on the whole image (small images are upscaled to 96 px first, as the mesh
    needs some resolution). With a `render_rule`, the face's resolution is that of the original image.
    Returns (crop, blendshapes (52,) NaN when no mesh, found).
    """
    big, result = mesh_face_image(mesh, rgb)
    if not result.found[0]:
        render = None if render_rule is None else render_side(min(rgb.shape[:2]), render_rule)
        return resize_crops(fallback_crop(rgb, size, colour)[None], size, render)[0], result.blendshapes[0], False
    render = None
    unit = None
    if render_rule is not None:
        unit = unit_matrix(result.landmarks[0])
        render = render_side(crop_native_px(unit) * rgb.shape[0] / big.shape[0], render_rule)
    return expression_crop(big, result.landmarks[0], size, colour, unit, render), result.blendshapes[0], True
