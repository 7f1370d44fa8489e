"""Fixed reference inputs for checking an exported expression model (no torch: the int8 tests use them too)."""

from __future__ import annotations

import numpy as np

from mien.expression.crop import EXPR_SIZE


def reference_inputs(n: int = 16, seed: int = 0, size: int = EXPR_SIZE, colour: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Fixed test inputs from the public-domain astronaut photo: jittered expression crops and blendshapes.

    Every fourth face has no blendshapes (NaN), as when the mesh fails.
    """
    import cv2
    from skimage import data as skdata

    from mien.analyzer import Analyzer
    from mien.expression.crop import expression_crop

    rgb = skdata.astronaut()
    with Analyzer(mode="fast", expression=False) as analyzer:
        faces = analyzer.analyze(rgb)
    base = expression_crop(rgb, faces.landmarks[0], size, colour)
    rng = np.random.default_rng(seed)
    crops, blends = [], []
    for i in range(n):
        angle, scale = rng.uniform(-15, 15), rng.uniform(0.9, 1.1)
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
        crop = cv2.warpAffine(base, matrix, (size, size), borderMode=cv2.BORDER_REPLICATE)
        crop = np.clip(crop * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30), 0, 255).astype(np.uint8)
        crops.append(crop[:, ::-1] if i % 2 else crop)
        blend = np.clip(faces.blendshapes[0] + rng.normal(0, 0.15, 52), 0, 1).astype(np.float32)
        blends.append(np.full(52, np.nan, np.float32) if i % 4 == 3 else blend)
    return np.stack(crops), np.stack(blends)
