"""Writes MediaPipe's own outputs on the bundled photo, which the tests compare mien's networks against:

- tests/data/blazeface_reference.npz: its FaceDetector on views of the photo (`tests/test_blazeface.py`);
- tests/data/landmarker_reference.npz: its FaceLandmarker (points, blendshapes, matrix) on a non-square crop
  and on a crop centred on the face (`tests/test_pipeline.py`).

Run once where `mediapipe` is installed (`pip install mediapipe` in a separate venv: it is not a dependency
of mien, and it brings a second OpenCV).
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from blazeface_views import views  # noqa: E402


def main() -> None:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    from mien.models import resolve

    with zipfile.ZipFile(resolve("face_landmarker")) as bundle:
        model = bundle.read("face_detector.tflite")
    detector = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
        base_options=BaseOptions(model_asset_buffer=model), min_detection_confidence=0.3,
        min_suppression_threshold=0.3))
    out = {}
    for name, image in views().items():
        result = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
        height, width = image.shape[:2]
        rows = [[d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.width, d.bounding_box.height,
                 d.categories[0].score] + [v for k in d.keypoints for v in (k.x * width, k.y * height)]
                for d in result.detections]
        out[name] = np.asarray(rows, np.float32).reshape(-1, 17)
        print(name, image.shape, len(rows))
    data = Path(__file__).resolve().parents[2] / "tests" / "data"
    np.savez_compressed(data / "blazeface_reference.npz", **out)
    np.savez_compressed(data / "landmarker_reference.npz", **landmarker_reference(mp, vision, BaseOptions))
    print("wrote", data)


# The non-square photo and the crop centred on its face that tests/test_pipeline.py uses (x1, y1, x2, y2 of
# the photo padded by HALF on every side).
PHOTO_COLUMNS = (40, 440)
HALF = 107
CENTRED = (185, 124, 399, 338)


def landmarker_reference(mp, vision, BaseOptions) -> dict[str, np.ndarray]:
    import cv2

    from mien.models import resolve

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(resolve("face_landmarker"))), num_faces=1,
        output_face_blendshapes=True, output_facial_transformation_matrixes=True)
    photo = views()["whole"][:, PHOTO_COLUMNS[0]:PHOTO_COLUMNS[1]]
    padded = cv2.copyMakeBorder(photo, HALF, HALF, HALF, HALF, cv2.BORDER_CONSTANT)
    x1, y1, x2, y2 = CENTRED
    out = {}
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for name, image in (("photo", photo), ("centred", padded[y1:y2, x1:x2])):
            result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            h, w = image.shape[:2]
            out[f"{name}_points"] = np.array([(p.x * w, p.y * h) for p in result.face_landmarks[0]], np.float32)
            out[f"{name}_blendshapes"] = np.array([c.score for c in result.face_blendshapes[0]], np.float32)
            out[f"{name}_matrix"] = np.asarray(result.facial_transformation_matrixes[0], np.float32)
    return out


if __name__ == "__main__":
    main()
