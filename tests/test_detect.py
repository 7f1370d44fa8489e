import time

import cv2
import numpy as np
import pytest

from conftest import collage
from mien.face.blazeface import box_iou, weighted_nms
from mien.face.detect import DetectorOptions, FaceDetector, tile_windows


@pytest.fixture(scope="module")
def detector():
    d = FaceDetector(DetectorOptions(mode="fast"))
    yield d
    d.close()


def test_single_large_face_fast_and_quick(detector, astronaut):
    frame = cv2.resize(astronaut, (640, 480))
    boxes, scores = detector.detect(frame, mode="fast")
    assert len(boxes) == 1 and scores[0] > 0.8
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        detector.detect(frame, mode="fast")
        times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.020, f"fast detection took {np.median(times) * 1000:.1f} ms"


def test_box_is_on_the_face(detector, astronaut):
    boxes, _ = detector.detect(astronaut, mode="fast")
    # Hand-checked face region of the astronaut photo (x1, y1, x2, y2).
    assert box_iou(boxes, np.array([[180, 75, 270, 180]]))[0, 0] > 0.6


def test_thorough_finds_small_faces_that_fast_misses(detector, face_crop):
    crowd = collage(face_crop, rows=4, cols=6, tile_px=90)  # 24 faces of ~45 px
    fast, _ = detector.detect(crowd, mode="fast")
    thorough, scores = detector.detect(crowd, mode="thorough")
    assert len(fast) < 6
    assert len(thorough) >= 20
    assert np.all(scores >= 0.5)
    # No duplicates: merged boxes barely overlap.
    iou = box_iou(thorough, thorough)
    np.fill_diagonal(iou, 0)
    assert iou.max() < 0.3


def test_auto_switches_to_thorough_for_groups(detector, face_crop):
    crowd = collage(face_crop, rows=3, cols=5, tile_px=100)
    boxes, _ = detector.detect(crowd, mode="auto")
    assert len(boxes) >= 12


def test_max_faces_and_min_face_size(face_crop):
    crowd = collage(face_crop, rows=2, cols=3, tile_px=160)
    d = FaceDetector(DetectorOptions(mode="thorough", max_faces=2))
    boxes, scores = d.detect(crowd)
    assert len(boxes) == 2 and scores[0] >= scores[1]
    d.close()
    d = FaceDetector(DetectorOptions(mode="thorough", min_face_size=500))
    assert len(d.detect(crowd)[0]) == 0
    d.close()


def test_no_face_in_plain_image(detector):
    assert len(detector.detect(np.full((480, 640, 3), 127, np.uint8), mode="thorough")[0]) == 0


def test_tiles_cover_image_with_overlap():
    windows = tile_windows(1024, 768)
    assert windows[0] == (0, 0, 1024, 768)
    covered = np.zeros((768, 1024), bool)
    for x1, y1, x2, y2 in windows[1:]:
        assert x2 - x1 == y2 - y1 or x2 == 1024 or y2 == 768
        covered[y1:y2, x1:x2] = True
    assert covered.all()


def test_weighted_nms_merges_duplicates():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    merged, scores = weighted_nms(boxes, np.array([0.9, 0.9, 0.6], np.float32), iou=0.3)
    assert len(merged) == 2
    np.testing.assert_allclose(merged[0], [0.5, 0.5, 10.5, 10.5])
    np.testing.assert_allclose(scores, [0.9, 0.6])
