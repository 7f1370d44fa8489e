import numpy as np
import pandas as pd
import pytest

from mien.io.table import columns, faces_to_frame, read_table
from mien.io.writer import TableWriter


@pytest.fixture(scope="module")
def frames(analyzer, astronaut):
    return [analyzer.analyze(astronaut, source="astro"), analyzer.analyze(np.zeros((64, 64, 3), np.uint8), source="blank")]


def test_columns_are_stable_and_named(frames):
    table = faces_to_frame(frames, landmarks="2d")
    assert list(table.columns) == columns("2d")
    for name in ("AU01", "AU45", "pose_yaw", "bs_jawOpen", "bs_neutral", "flag_blurry", "lm_x_0", "lm_y_477"):
        assert name in table.columns
    assert len(table) == 2 and table["face_found"].tolist() == [True, False]
    assert "lm_z_0" in faces_to_frame(frames, landmarks="3d").columns
    assert not any(c.startswith("lm_") for c in faces_to_frame(frames, landmarks="none").columns)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_formats_round_trip(tmp_path, frames, suffix):
    table = faces_to_frame(frames)
    path = tmp_path / f"out{suffix}"
    with TableWriter(path) as writer:
        writer.write(table.iloc[:1])
        writer.write(table.iloc[1:])
    back = read_table(path)
    assert list(back.columns) == list(table.columns)
    assert len(back) == 2
    numeric = ["box_x", "pose_yaw", "AU12", "bs_mouthSmileLeft", "lm_x_10"]
    np.testing.assert_allclose(back[numeric].to_numpy(float), table[numeric].to_numpy(float), rtol=1e-5, equal_nan=True)
    assert back["face_found"].astype(bool).tolist() == [True, False]


def test_openface_format(tmp_path, frames):
    path = tmp_path / "of.csv"
    with TableWriter(path, fmt="openface") as writer:
        writer.write(faces_to_frame(frames))
    back = pd.read_csv(path)
    for name in ("frame", "face_id", "confidence", "success", "pose_Rx", "pose_Ry", "pose_Rz",
                 "gaze_angle_x", "AU12_r", "AU12_c", "x_0", "y_67"):
        assert name in back.columns
    assert "y_68" not in back.columns  # OpenFace's 68 points, not the 478-point mesh under its names
    row = back.iloc[0]
    assert row["AU12_r"] > 3 and row["AU12_c"] == 1  # the astronaut smiles
    assert abs(row["pose_Ry"]) < 0.35  # radians
    assert back["success"].tolist() == [1, 0]


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown table suffix"):
        TableWriter(tmp_path / "out.xlsx")
