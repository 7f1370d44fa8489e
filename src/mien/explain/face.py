"""One face's explanation: heatmap, the face regions it falls on, and the rationale sentence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mien.expression.classes import EXPRESSIONS
from mien.expression.classifier import ExpressionClassifier
from mien.explain.rationale import rationale
from mien.explain.regions import region_map, region_shares
from mien.explain.saliency import heatmap_to_image, occlusion_heatmaps
from mien.faces import Faces


@dataclass
class FaceExplanation:
    """Why the classifier chose `EXPRESSIONS[target]` for one face."""

    target: int
    probability: float
    regions: dict[str, float]  # share of the heatmap in each face region
    image_heat: np.ndarray  # (H, W) heatmap on the image, zero outside the face
    text: str  # the rationale sentence


def explain_face(classifier: ExpressionClassifier, rgb: np.ndarray, faces: Faces, i: int) -> FaceExplanation:
    """Occlusion heatmap of face `i`'s top class (as `faces.expression` has it), its region shares and the
    rationale; `rgb` is their image at any size (the heatmap is in its pixels). `classifier` computes the
    heatmap: `Analyzer.explainer`, the float network of the shipped int8 model."""
    return explain_faces(classifier, rgb, faces, [i])[0]


def explain_faces(classifier: ExpressionClassifier, rgb: np.ndarray, faces: Faces,
                  indices: list[int]) -> list[FaceExplanation]:
    """`explain_face` for several faces of one image, their heatmaps computed in one classifier batch."""
    shown = faces.scaled_to(rgb.shape[:2])
    crops = [classifier.crop(rgb, shown.landmarks[i]) for i in indices]
    # The class explained is the row's, even where the explaining network would rank another first.
    targets: list[int | None] = [int(np.argmax(faces.expression[i])) for i in indices]
    heats = occlusion_heatmaps(classifier, crops, faces.blendshapes[indices], targets)
    out = []
    for i, (heat, target) in zip(indices, heats):
        landmarks = shown.landmarks[i]
        regions = region_shares(heat, region_map(landmarks, heat.shape[0]))
        probability = float(faces.expression[i, target])
        out.append(FaceExplanation(target, probability, regions, heatmap_to_image(heat, landmarks, rgb.shape[:2]),
                                   rationale(EXPRESSIONS[target], probability, faces.aus[i], regions)))
    return out
