"""Per-stage timing of the image pipeline on this machine (ms per image / per face).

Usage: python benchmarks/stages.py [--repeats 50]
Stages on the 640x480 astronaut portrait (one face): detector (fast mode), the mesh network on
the face's region, the blendshape network, the facial transformation fit, MediaPipe's
FaceLandmarker on the same region for comparison (it detects the face again inside), the measurements
mien adds (pose, gaze, AUs, alignment, sharpness, flags, expression; and the expression
stage alone: crop, classifier, valence/arousal), the whole `Analyzer.analyze` call in
fast mode, and thorough mode on a 1280x960 collage of 12 faces.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import cv2
import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision
from skimage import data

from mien.analyzer import Analyzer, AnalyzerOptions
from mien.face.detect import DetectorOptions, FaceDetector
from mien.face.geometry import facial_transforms
from mien.face.mesh_net import MeshNetworks, region_from_box
from mien.models import resolve


def timed(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(samples)), 2)


def landmarker():
    return vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(resolve("face_landmarker"))), num_faces=2,
        min_face_detection_confidence=0.3, min_face_presence_confidence=0.3,
        output_face_blendshapes=True, output_facial_transformation_matrixes=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    frame = cv2.resize(data.astronaut(), (640, 480))
    results: dict[str, float | str] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}

    detector = FaceDetector(DetectorOptions(mode="fast"))
    boxes, _ = detector.detect(frame)
    results["detector_fast_ms_per_image"] = timed(lambda: detector.detect(frame), args.repeats)
    networks, region = MeshNetworks(), region_from_box(boxes[0])
    points, _ = networks.mesh(frame, region)
    results["mesh_ms_per_face"] = timed(lambda: networks.mesh(frame, region), args.repeats)
    results["blendshapes_ms_per_face"] = timed(lambda: networks.blendshapes(points), args.repeats)
    results["transform_ms_per_face"] = timed(lambda: facial_transforms(points[None], frame.shape[:2]), args.repeats)
    crop = cv2.warpAffine(frame, region.to_crop(), (256, 256))
    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=crop)
    full = landmarker()
    results["mediapipe_face_landmarker_ms_per_face"] = timed(lambda: full.detect(image), args.repeats)

    with Analyzer(AnalyzerOptions(mode="fast")) as analyzer:
        faces = analyzer.analyze(frame)
        results["measurements_ms_per_face"] = timed(lambda: analyzer.measure(faces, frame), args.repeats)
        results["pipeline_fast_ms_per_image_1_face"] = timed(lambda: analyzer.analyze(frame), args.repeats)
    with Analyzer(AnalyzerOptions(mode="fast", expression=False)) as analyzer:
        results["measurements_without_expression_ms_per_face"] = timed(lambda: analyzer.measure(faces, frame), args.repeats)
    results["expression_ms_per_face"] = round(results["measurements_ms_per_face"]
                                              - results["measurements_without_expression_ms_per_face"], 2)
    tile = cv2.resize(data.astronaut()[30:230, 120:330], (200, 200))
    group = np.full((960, 1280, 3), 90, np.uint8)
    for r in range(3):
        for c in range(4):
            group[40 + r * 300:240 + r * 300, 60 + c * 300:260 + c * 300] = tile
    with Analyzer(AnalyzerOptions(mode="thorough")) as analyzer:
        n = len(analyzer.analyze(group))
        ms = timed(lambda: analyzer.analyze(group), max(5, args.repeats // 10))
    results["pipeline_thorough_faces_found_of_12"] = n
    results["pipeline_thorough_ms_per_image_12_faces"] = ms
    results["pipeline_thorough_ms_per_face"] = round(ms / max(n, 1), 2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
