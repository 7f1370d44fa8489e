"""Run the expression model over a labelled set of images and measure it (`mien eval`).

Two ways in: `crops=True` for images that already are face crops (FER+, AffectNet: the mesh
runs on the whole image, with a plain resize when it finds nothing), or full detection
(the largest mesh-confirmed face of each image; images without a face are counted apart).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import track

from mien.expression.classes import EXPRESSIONS
from mien.expression.classifier import ExpressionClassifier
from mien.expression.crop import crop_from_face_image, expression_crop
from mien.expression.metrics import classification_metrics
from mien.io.images import ImageError, load_image


@dataclass
class EvalRun:
    """Predictions for the images that yielded a face, and what happened to the rest."""

    labels: np.ndarray
    probs: np.ndarray
    no_face: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    mesh_missing: int = 0
    seconds: float = 0.0
    classifier_seconds: float = 0.0


def collect_crops(paths: list[Path], crops: bool, progress: bool = True, classifier: ExpressionClassifier | None = None):
    """Yields (index, crop, blendshapes, mesh_found, error) per image, crops as `classifier` reads them;
    crop is None for no face or an error."""
    from mien.analyzer import Analyzer
    from mien.face.mesh import MeshEstimator

    tool = MeshEstimator() if crops else Analyzer(mode="auto", expression=False)
    try:
        for i, path in enumerate(track(paths, description="faces", disable=not progress)):
            try:
                loaded = load_image(path)
            except ImageError as error:
                yield i, None, None, False, f"{path}: {error}"
                continue
            if crops:
                crop, blend, found = (classifier.crop_face_image(tool, loaded.rgb) if classifier is not None
                                      else crop_from_face_image(tool, loaded.rgb))
                yield i, crop, blend, found, None
                continue
            faces = tool.analyze_loaded(loaded)
            if not len(faces):
                yield i, None, None, False, None
                continue
            areas = (faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])
            j = int(areas.argmax())
            landmarks = faces.scaled_to(loaded.rgb.shape[:2]).landmarks[j]
            crop = classifier.crop(loaded.rgb, landmarks) if classifier is not None else expression_crop(loaded.rgb, landmarks)
            yield i, crop, faces.blendshapes[j], True, None
    finally:
        tool.close()


def run_eval(paths: list[Path], labels: np.ndarray, crops: bool, classifier: ExpressionClassifier | None = None,
             progress: bool = True) -> EvalRun:
    """Predict every image of a labelled list; see `EvalRun`."""
    classifier = classifier or ExpressionClassifier()
    started = time.perf_counter()
    kept, images, blends, no_face, errors, missing = [], [], [], [], [], 0
    for i, crop, blend, found, error in collect_crops(paths, crops, progress, classifier):
        if error:
            errors.append(error)
        if crop is None:
            if not error:
                no_face.append(str(paths[i]))
            continue
        kept.append(i)
        images.append(crop)
        blends.append(blend)
        missing += not found
    tick = time.perf_counter()
    probs = classifier.predict(np.stack(images), np.stack(blends)) if images else np.zeros((0, len(EXPRESSIONS)))
    classifier_seconds = time.perf_counter() - tick
    return EvalRun(labels=np.asarray(labels)[kept], probs=probs, no_face=no_face, errors=errors,
                   mesh_missing=missing, seconds=time.perf_counter() - started, classifier_seconds=classifier_seconds)


def classifier_speed(classifier: ExpressionClassifier, batch: int = 256, repeats: int = 20) -> dict:
    """Batched throughput (faces/s) and single-face latency (ms, median) on random crops."""
    rng = np.random.default_rng(0)
    side = classifier.input_size
    crops = rng.integers(0, 255, (batch, side, side, 3) if classifier.colour else (batch, side, side), dtype=np.uint8)
    blend = rng.random((batch, 52), dtype=np.float32)
    classifier.predict(crops, blend)
    tick = time.perf_counter()
    for _ in range(max(1, repeats // 4)):
        classifier.predict(crops, blend)
    throughput = batch * max(1, repeats // 4) / (time.perf_counter() - tick)
    latencies = []
    for k in range(repeats):
        tick = time.perf_counter()
        classifier.predict(crops[k:k + 1], blend[k:k + 1])
        latencies.append(time.perf_counter() - tick)
    return {"batch": batch, "faces_per_s": float(throughput), "latency_ms": float(np.median(latencies) * 1000)}


def evaluate(name: str, paths: list[Path], labels: np.ndarray, present: tuple[str, ...], crops: bool,
             classifier: ExpressionClassifier | None = None, progress: bool = True) -> dict:
    """Full report (JSON-ready) for one labelled set."""
    classifier = classifier or ExpressionClassifier()
    run = run_eval(paths, labels, crops, classifier, progress)
    report = classification_metrics(run.labels, run.probs, EXPRESSIONS, present)
    report.update({
        "dataset": name, "images": len(paths), "evaluated": int(len(run.labels)),
        "no_face": len(run.no_face), "errors": run.errors, "mesh_missing": run.mesh_missing,
        "mode": "crops" if crops else "detect",
        "images_per_s": len(paths) / run.seconds if run.seconds else float("nan"),
        "classifier": classifier_speed(classifier),
        "model": {k: classifier.metadata.get(k) for k in ("temperature", "trained_with", "best_epoch")},
    })
    return report
