"""The one-call Python API: mien.analyze, mien.analyze_video, mien.read."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

import mien
from mien.video import synthetic as syn


def test_analyze_folder_arrays_and_bad_inputs_never_raise(tmp_path, astronaut):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "b_blank.png"), np.zeros((80, 120, 3), np.uint8))
    (folder / "c_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = mien.analyze(folder, progress=False)
    assert len(df) == 2 and df["face_found"].tolist() == [True, False]
    assert df.attrs["errors"] == [f"{folder / 'c_broken.jpg'}: not a recognised image format"]
    assert len([w for w in caught if "could not be read" in str(w.message)]) == 1, [str(w.message) for w in caught]
    assert df.attrs["provenance"]["options"]["mode"] == "auto" and len(df.attrs["provenance"]["inputs"]) == 2
    assert df.loc[0, "expression"] == "happy" and 0 <= df.loc[0, "AU12_p"] <= 1
    arrays = mien.analyze([astronaut, np.zeros((64, 64, 3), np.uint8)], progress=False, mode="fast")
    assert arrays["face_found"].tolist() == [True, False] and arrays.attrs["errors"] == []
    with pytest.raises(TypeError):
        mien.analyze(folder, no_such_option=1)


def test_analyze_video_and_read_back(tmp_path):
    clip = syn.write_video(tmp_path / "one.mp4", syn.frames(syn.faces_grid(1, side=200), 1.0))
    rows = mien.analyze_video(clip, progress=False)
    assert len(rows) == 30 and set(rows["track_id"]) == {0}
    assert list(rows.attrs["tracks"]["track_id"]) == [0] and "expression" in rows.attrs["segments"].columns
    assert rows.attrs["provenance"]["kind"] == "video" and rows.attrs["warnings"] == []
    path = tmp_path / "rows.parquet"
    from mien.io.writer import write_parquet

    write_parquet(rows, path, rows.attrs["provenance"])
    again = mien.read(path)
    assert len(again) == 30 and again.attrs["provenance"]["kind"] == "video"
    from matplotlib.axes import Axes

    assert isinstance(again.mien.plot_timeline(0), Axes)
    assert isinstance(again.mien.plot_timeline(0, columns=["AU12", "AU06"]), Axes)
    based = again.mien.baseline()
    assert based["AU12_delta"].notna().all() and abs(based["AU12_delta"].median()) < 0.2
    assert list(again.mien.segments()["track_id"].unique()) == [0]


def test_accessor_gives_the_same_answers_on_a_fresh_and_a_re_read_table(tmp_path, astronaut):
    shifted = [np.ascontiguousarray(np.roll(astronaut, 40 * k, axis=1)) for k in range(4)]
    fresh = mien.analyze(shifted, progress=False, landmarks="3d")
    fresh["condition"] = ["A", "A", "B", "B"]
    path = tmp_path / "faces.parquet"
    from mien.io.writer import write_parquet

    write_parquet(fresh, path, fresh.attrs["provenance"])
    again = mien.read(path)
    for group in ("aus", "au_probabilities", "expressions", "blendshapes", "pose", "gaze", "affect", "quality"):
        np.testing.assert_allclose(getattr(fresh.mien, group).to_numpy(float), getattr(again.mien, group).to_numpy(float),
                                   rtol=1e-6, equal_nan=True, err_msg=group)
    assert fresh.mien.aus.shape == (4, 20) and fresh.mien.landmarks.shape == (4, 478, 3)
    np.testing.assert_allclose(fresh.mien.landmarks, again.mien.landmarks)
    assert len(list(again.mien.faces())) == 4
    compared = again.mien.compare("condition", "A", "B")
    assert {"AU12", "valence"} <= set(compared["measure"]) and compared["p_holm"].between(0, 1).all()
    assert len(again[again["condition"] == "A"].mien.aus) == 2  # survives filtering
    from matplotlib.axes import Axes

    assert isinstance(again.mien.plot_expressions(by="condition"), Axes)
    assert isinstance(again.mien.plot_aus_on_face(0), Axes)
    detections = again.mien.plot_detections(0, image=shifted[0])
    assert isinstance(detections, Axes) and len(detections.patches) == 1 and "happy" in detections.texts[0].get_text()
    # Photos get 2-D landmark columns by default, as `mien analyze` writes them; `landmarks="none"` drops them.
    assert mien.analyze(shifted[:1], progress=False).mien.landmarks.shape == (1, 478, 2)
    with pytest.raises(AttributeError, match="landmark"):
        mien.analyze(shifted[:1], progress=False, landmarks="none").mien.landmarks
