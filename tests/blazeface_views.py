"""Views of the bundled photo on which MediaPipe's detector and mien's LiteRT decoding are compared:
non-square crops, scales that are not a power of two, a face cut by the border, a mosaic of four faces."""

from __future__ import annotations

from importlib.resources import files

import cv2
import numpy as np


def views() -> dict[str, np.ndarray]:
    path = files("mien") / "data" / "astronaut.jpg"
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    quarter = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
    out = {
        "whole": image,
        "wide": image[60:300, :],
        "tall": image[:, 100:340],
        "scaled_333": cv2.resize(image, (333, 333), interpolation=cv2.INTER_AREA),
        "scaled_wide": cv2.resize(image, (900, 517), interpolation=cv2.INTER_LINEAR),
        "cut_by_top": image[120:, 60:420],
        "cut_by_left": image[:, 200:],
        "mosaic": np.concatenate([np.concatenate([quarter, quarter[:, ::-1]], 1)] * 2, 0),
        "small_in_large": cv2.copyMakeBorder(cv2.resize(image, (300, 300)), 200, 60, 350, 80, cv2.BORDER_CONSTANT),
    }
    return {name: np.ascontiguousarray(view) for name, view in out.items()}
