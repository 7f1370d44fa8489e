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

from mien.face.align import align_face

EXPR_SIZE = 48
EXPR_MARGIN = 1 / 1.2 - 1  # zoom in 1.2x
EXPR_SHIFT = -0.09  # and move the face up by 9% of the crop
# Stored with every model and training cache made from these crops, and checked when they are used.
CROP_FRAMING = {"input_size": EXPR_SIZE, "align_margin": EXPR_MARGIN, "align_shift": EXPR_SHIFT}


def expression_crop(rgb: np.ndarray, landmarks: np.ndarray, size: int = EXPR_SIZE, colour: bool = False,
                    unit: np.ndarray | None = None) -> np.ndarray:
    """(size, size) uint8 grayscale (or, with `colour`, (size, size, 3) RGB) aligned crop from an
    (H, W, 3) RGB image and (478, 3) landmarks, framed like FER+ faces (`unit`: the face's
    `mien.face.align.unit_matrix`, if already computed)."""
    aligned = align_face(rgb, landmarks, size * 2, EXPR_MARGIN, EXPR_SHIFT, unit)
    if not colour:
        aligned = cv2.cvtColor(aligned, cv2.COLOR_RGB2GRAY)
    return cv2.resize(aligned, (size, size), interpolation=cv2.INTER_AREA)


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


def crop_from_face_image(mesh, rgb: np.ndarray, size: int = EXPR_SIZE,
                         colour: bool = False) -> tuple[np.ndarray, np.ndarray, bool]:
    """Expression crop and blendshapes for an image that already is a face crop (FER+, AffectNet, RAF-DB).

    The mesh runs on the whole image (small images are upscaled to 96 px first, as the mesh
    needs some resolution). Returns (crop, blendshapes (52,) NaN when no mesh, found).
    """
    big, result = mesh_face_image(mesh, rgb)
    if not result.found[0]:
        return fallback_crop(rgb, size, colour), result.blendshapes[0], False
    return expression_crop(big, result.landmarks[0], size, colour), result.blendshapes[0], True
