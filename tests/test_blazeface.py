"""mien's own decoding of BlazeFace (LiteRT) against MediaPipe's FaceDetector on the same network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from blazeface_views import views
from mien.face.blazeface import FULL_RANGE, BlazeFace, anchor_centres, box_iou
from mien.face.detect import _whole_pixels

REFERENCE = Path(__file__).parent / "data" / "blazeface_reference.npz"  # benchmarks/tools/blazeface_reference.py


@pytest.fixture(scope="module")
def network() -> BlazeFace:
    return BlazeFace(min_score=0.3, nms_iou=0.3)


def test_anchors_cover_the_input_as_mediapipe_lays_them_out():
    centres = anchor_centres()
    assert centres.shape == (896, 2)
    assert np.allclose(centres[:2], [[0.5 / 16, 0.5 / 16]] * 2)  # two anchors per cell of the 16x16 grid
    assert np.allclose(centres[512:518], [[0.5 / 8, 0.5 / 8]] * 6)  # then six per cell of the 8x8 grid
    assert np.allclose(centres[-1], [7.5 / 8, 7.5 / 8])


@pytest.mark.parametrize("name", sorted(views()))
def test_detections_match_mediapipe(network, name):
    image = views()[name]
    expected = np.load(REFERENCE)[name]
    rows, scores = network.detect(image)
    assert len(rows) == len(expected), (name, scores, expected[:, 4])
    if not len(rows):
        return
    height, width = image.shape[:2]
    order = np.argsort(-expected[:, 4], kind="stable")
    expected = expected[order]
    boxes = np.stack([_whole_pixels(row[:4], width, height) for row in rows])
    mediapipe_boxes = np.concatenate([expected[:, :2], expected[:, :2] + expected[:, 2:4]], 1)
    # The same input to the bit (`letterbox_maps`): the same boxes, keypoints and scores up to float rounding.
    assert np.array_equal(boxes, mediapipe_boxes), name
    assert np.abs(rows[:, 4:] - expected[:, 5:]).max() < 1e-3, name
    assert np.abs(scores - expected[:, 4]).max() < 1e-5, name


def test_no_face_gives_empty_arrays_of_the_right_shape(network):
    rows, scores = network.detect(np.full((300, 500, 3), 90, np.uint8))
    assert rows.shape == (0, 16) and scores.shape == (0,)


def test_full_range_anchors_are_one_per_cell_of_a_48_grid():
    centres = anchor_centres(FULL_RANGE)
    assert centres.shape == (2304, 2)
    assert np.allclose(centres[:2], [[0.5 / 48, 0.5 / 48], [1.5 / 48, 0.5 / 48]])  # row by row
    assert np.allclose(centres[-1], [47.5 / 48, 47.5 / 48])


def test_full_range_finds_the_face_short_range_finds(astronaut):
    short, _ = BlazeFace(min_score=0.5).detect(astronaut)
    full, scores = BlazeFace(min_score=0.5, variant=FULL_RANGE).detect(astronaut)
    assert len(short) == len(full) == 1 and scores[0] > 0.8
    assert box_iou(short[0, :4], full[0, :4])[0, 0] > 0.7
    # keypoints in the same order (eyes, nose tip, mouth, ears), within a tenth of the face's width
    assert np.abs(short[0, 4:] - full[0, 4:]).max() < 0.1 * (short[0, 2] - short[0, 0])
