"""Faces the mesh cannot read (heads turned past its range) stay rows, flagged, and keep their track."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import needs_dataset
from mien.analyzer import Analyzer
from mien.io.images import load_image
from mien.video import synthetic as syn
from mien.video.analyzer import VideoAnalyzer, VideoOptions
from mien.video.reader import VideoFrame, open_video

PERSON = "AF15"  # a KDEF person whose squeezed half profile the detectors find but the mesh cannot read


def _photo(view: str) -> np.ndarray:
    kdef = needs_dataset("kdef")
    return load_image(kdef / view / "neutral" / f"{PERSON}NE{view}.jpg").rgb


def _turned_further(rgb: np.ndarray, share: float = 0.45) -> np.ndarray:
    """A half profile squeezed to `share` of its width on a grey canvas: the foreshortening of a head turned
    further than 45 degrees, past the mesh's range."""
    height, width = rgb.shape[:2]
    narrow = cv2.resize(rgb, (int(width * share), height), interpolation=cv2.INTER_AREA)
    canvas = np.full_like(rgb, 128)
    left = (width - narrow.shape[1]) // 2
    canvas[:, left:left + narrow.shape[1]] = narrow
    return canvas


def test_a_turned_face_without_a_mesh_is_a_flagged_row_and_a_frontal_one_is_measured():
    with Analyzer(mode="auto") as analyzer:
        turned = analyzer.analyze(_turned_further(_photo("HL")))
        frontal = analyzer.analyze(_photo("S"))
        empty = analyzer.analyze(np.full((300, 400, 3), 128, np.uint8))
    assert len(turned) == 1 and turned.flag("no_mesh")[0] and turned.flag("profile")[0]
    assert np.isnan(turned.expression[0]).all() and turned.status[0] is None
    assert len(frontal) == 1 and not frontal.flag("no_mesh")[0] and not frontal.flag("profile")[0]
    assert len(empty) == 0


def test_a_head_turning_past_the_mesh_and_back_keeps_one_track(tmp_path):
    """1 s frontal, 0.5 s half profile, 1 s turned further (no mesh), 0.5 s half profile, 1 s frontal; an mp4."""
    frontal, half = _photo("S"), _photo("HL")
    turned = _turned_further(half)
    fps = 10
    script = [frontal] * fps + [half] * (fps // 2) + [turned] * fps + [half] * (fps // 2) + [frontal] * fps
    path = syn.write_video(tmp_path / "turn.mp4", (VideoFrame(i, i / fps, rgb) for i, rgb in enumerate(script)), fps)
    rows = []
    with VideoAnalyzer(VideoOptions()) as video, open_video(path) as reader:
        for frame, faces in video.run(reader):
            rows.append((frame.index, faces))
    assert len(rows) == len(script)
    assert all(len(faces) == 1 for _, faces in rows), [len(f) for _, f in rows]
    assert len({int(faces.track_ids[0]) for _, faces in rows}) == 1  # one person, one id throughout
    stretch = range(fps + fps // 2, 2 * fps + fps // 2)
    for index, faces in rows:
        unread = bool(faces.flag("no_mesh")[0])
        if index in stretch:
            assert unread and faces.flag("profile")[0], index
        elif index not in (stretch.start - 1, stretch.stop):  # a frame either side may go either way
            assert not unread, index
    assert all(np.isfinite(faces.expression[0]).all() for i, faces in rows if i < fps)


@pytest.mark.parametrize("view", ["S", "HL", "HR"])
def test_turn_from_detector_keypoints_follows_the_view(view):
    with Analyzer(mode="auto") as analyzer:
        _, _, _, turns = analyzer.detector.detect_with_pose(_photo(view))
    expected = {"S": (-0.1, 0.1), "HL": (-0.7, -0.35), "HR": (0.35, 0.7)}[view]
    assert len(turns) == 1 and expected[0] < turns[0] < expected[1]
