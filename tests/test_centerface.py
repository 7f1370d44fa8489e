"""CenterFace: one pass for faces of every size, merged with BlazeFace beyond portraits."""

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import mien
from conftest import collage
from mien.face.blazeface import box_iou
from mien.face.centerface import CenterFace
from mien.face.detect import DetectorOptions, FaceDetector

WIDER = Path(__file__).parents[1] / "../shared/datasets/wider_mini"


@pytest.fixture(scope="module")
def centerface():
    return CenterFace()


def test_small_faces_on_a_wide_canvas_are_found_where_they_are(centerface, face_crop):
    crowd = collage(face_crop, rows=3, cols=7, tile_px=70)  # 21 faces of ~35 px
    canvas = np.full((700, 1200, 3), 90, np.uint8)
    canvas[350:350 + crowd.shape[0], 500:500 + crowd.shape[1]] = crowd
    rows, scores = centerface.detect(canvas)
    assert len(rows) >= 19 and scores.min() >= centerface.min_score
    centres = (rows[:, :2] + rows[:, 2:4]) / 2
    assert np.all((centres[:, 0] > 500) & (centres[:, 0] < 500 + crowd.shape[1]))
    assert np.all((centres[:, 1] > 350) & (centres[:, 1] < 350 + crowd.shape[0]))
    assert np.all(np.abs(rows[:, 5]) < 0.2)  # eyes level: sin of the eye line near 0


def test_the_eye_line_follows_a_rolled_face(centerface, astronaut):
    rows, _ = centerface.detect(astronaut)
    level = np.degrees(np.arctan2(rows[0, 5], rows[0, 4]))
    rotation = cv2.getRotationMatrix2D((225.0, 130.0), -25, 1.0)  # image turned 25 degrees clockwise
    rows, _ = centerface.detect(cv2.warpAffine(astronaut, rotation, (512, 512)))
    assert np.degrees(np.arctan2(rows[0, 5], rows[0, 4])) - level == pytest.approx(25, abs=6)


def test_a_large_image_is_shrunk_and_boxes_come_back_in_its_pixels(centerface, astronaut):
    small, _ = centerface.detect(astronaut)
    large, _ = centerface.detect(cv2.resize(astronaut, (2048, 2048)), max_side=512)
    assert box_iou(large[0, :4] / 4, small[0, :4])[0, 0] > 0.95


def test_auto_runs_centerface_beyond_portraits_only(face_crop, astronaut):
    detector = FaceDetector(DetectorOptions(mode="auto"))
    portrait = cv2.resize(face_crop, (300, 380))
    assert len(detector.detect_faces(portrait)) == 1
    assert detector._center is None, "a portrait is BlazeFace's one pass"
    found = detector.detect_faces(collage(face_crop, rows=3, cols=5, tile_px=100))
    assert len(found) >= 14 and detector._center is not None
    assert (found.confirmed >= 0.5).sum() >= 14
    seen = found.confirmed > 0
    assert np.isnan(found.centerface_boxes[~seen]).all() and not np.isnan(found.centerface_boxes[seen]).any()


def test_fast_mode_never_runs_centerface(face_crop):
    detector = FaceDetector(DetectorOptions(mode="fast"))
    detector.detect_faces(collage(face_crop, rows=3, cols=5, tile_px=100))
    assert detector._center is None


@pytest.mark.skipif(not WIDER.exists(), reason="shared WIDER-mini not available")
def test_group_photos_rows_find_most_easy_faces():
    """The first 30 WIDER-mini photos (the whole 200: benchmarks/detector_wider.py): rows find most labelled
    easy faces, and few rows are not faces."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from detector_wider import load_boxes

    truth = load_boxes(WIDER / "boxes.txt")
    easy = found = rows = true_rows = 0
    with mien.Analyzer(mode="auto", expression=False) as analyzer:
        for name in sorted(truth)[:30]:
            faces = analyzer.analyze(WIDER / "images" / name)
            labelled = np.stack([box for box, _ in truth[name]])
            is_easy = np.array([level == "e" for _, level in truth[name]])
            iou = box_iou(labelled, faces.boxes) if len(faces) else np.zeros((len(labelled), 0))
            easy += int(is_easy.sum())
            found += int((iou.max(1) >= 0.5)[is_easy].sum()) if len(faces) else 0
            rows += len(faces)
            true_rows += int((iou.max(0) >= 0.5).sum()) if len(faces) else 0
    assert found / easy >= 0.85, f"{found}/{easy} easy faces"
    assert true_rows / rows >= 0.9, f"{true_rows}/{rows} rows are labelled faces"
