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
