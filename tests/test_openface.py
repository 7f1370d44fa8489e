"""OpenFace 2.x in and out: `read_openface` on a CSV written from OpenFace's documented column names,
and `--format openface` under OpenFace's conventions (signs, radians, 0-5 AU scale, 68 points)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mien
from mien.io.openface import MESH_TO_IBUG68, OPENFACE_AUS, read_openface, to_openface


def _openface_csv(path, frames: int = 6) -> pd.DataFrame:
    """A FeatureExtraction-style CSV: OpenFace's documented columns, with its ", " separators."""
    rng = np.random.default_rng(1)
    cols = {"frame": np.arange(1, frames + 1), "face_id": np.zeros(frames, int),
            "timestamp": np.arange(frames) / 30, "confidence": np.full(frames, 0.98), "success": np.ones(frames, int)}
    cols.update({f"gaze_{e}_{a}": rng.normal(size=frames) for e in (0, 1) for a in "xyz"})
    cols.update({"gaze_angle_x": np.full(frames, 0.1), "gaze_angle_y": np.full(frames, 0.05)})
    cols.update({f"pose_T{a}": rng.normal(size=frames) for a in "xyz"})
    cols.update({"pose_Rx": np.full(frames, 0.2), "pose_Ry": np.full(frames, -0.3), "pose_Rz": np.full(frames, 0.1)})
    cols.update({f"x_{i}": 100 + i + np.arange(frames) for i in range(68)})
    cols.update({f"y_{i}": 50 + 2 * i + np.zeros(frames) for i in range(68)})
    smile = np.array([0, 0, 4, 4.5, 4, 0.0])[:frames]
    cols.update({f"{au}_r": (smile if au == "AU12" else np.zeros(frames)) for au in OPENFACE_AUS if au != "AU28"})
    cols.update({f"{au}_c": ((smile > 1) if au == "AU12" else np.zeros(frames)).astype(int) for au in OPENFACE_AUS})
    table = pd.DataFrame(cols)
    path.write_text(table.to_csv(index=False).replace(",", ", "))
    return table


def test_read_openface_maps_names_units_and_signs(tmp_path):
    original = _openface_csv(tmp_path / "of.csv")
    df = read_openface(tmp_path / "of.csv")
    assert len(df) == 6 and df["source"].eq("of.csv").all() and df["face_found"].all()
    np.testing.assert_allclose(df["time_s"], original["timestamp"])
    np.testing.assert_allclose(df["pose_pitch"], -np.degrees(0.2), rtol=1e-6)  # Rx > 0 is chin down
    np.testing.assert_allclose(df["pose_yaw"], np.degrees(0.3), rtol=1e-6)     # Ry < 0 is towards image right
    np.testing.assert_allclose(df["pose_roll"], np.degrees(0.1), rtol=1e-6)
    np.testing.assert_allclose(df["gaze_yaw"] + df["pose_yaw"], np.degrees(0.1), rtol=1e-6)  # camera gaze kept
    np.testing.assert_allclose(df["AU12"], original["AU12_r"] / 5)
    assert df["AU12_c"].tolist() == [0, 0, 1, 1, 1, 0]
    assert df["box_x"].iloc[0] == 100 and df["box_w"].iloc[0] == 67 and df["box_h"].iloc[0] == 134
    # The accessor's analyses and plots work on it.
    assert df.mien.aus.shape == (6, 17)
    df["phase"] = ["rest"] * 2 + ["smile"] * 3 + ["rest"]
    assert df.mien.compare("phase", "rest", "smile").iloc[0]["measure"] == "AU12"
    assert df.mien.plot_timeline(0, columns=["AU12", "AU06"]).get_lines()
    with pytest.raises(ValueError, match="not an OpenFace"):
        (tmp_path / "other.csv").write_text("a,b\n1,2\n")
        read_openface(tmp_path / "other.csv")


def test_openface_output_follows_openface_conventions(analyzer, astronaut, tmp_path):
    frame = analyzer.analyze(astronaut).to_pandas(landmarks="2d")
    out = to_openface(frame)
    np.testing.assert_allclose(out["pose_Rx"], -np.radians(frame["pose_pitch"]), rtol=1e-5)
    np.testing.assert_allclose(out["pose_Ry"], -np.radians(frame["pose_yaw"]), rtol=1e-5)
    np.testing.assert_allclose(out["pose_Rz"], np.radians(frame["pose_roll"]), rtol=1e-5)
    np.testing.assert_allclose(out["AU12_r"], frame["AU12"] * 5, rtol=1e-5)
    # 68 iBUG points: 36 and 45 are the outer eye corners, 48 and 54 the mouth corners, 8 the chin.
    assert out["x_36"].iloc[0] < out["x_39"].iloc[0] < out["x_42"].iloc[0] < out["x_45"].iloc[0]
    assert out["x_48"].iloc[0] < out["x_54"].iloc[0]
    assert out["y_8"].iloc[0] == max(out[f"y_{i}"].iloc[0] for i in range(68))
    assert len(MESH_TO_IBUG68) == 68 and "x_68" not in out.columns
    # Round trip: OpenFace's file read back gives mien's pose and AUs.
    path = tmp_path / "mien_as_openface.csv"
    out.to_csv(path, index=False)
    back = read_openface(path)
    for column in ("pose_yaw", "pose_pitch", "pose_roll", "gaze_yaw", "gaze_pitch", "AU12"):
        np.testing.assert_allclose(back[column], frame[column], rtol=1e-4, atol=1e-4)


def test_openface_csv_says_what_differs(tmp_path, astronaut):
    from PIL import Image

    Image.fromarray(astronaut).save(tmp_path / "a.jpg")
    from typer.testing import CliRunner
    from mien.cli import app

    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "a.jpg"), "-o", str(tmp_path / "of.csv"),
                                      "--format", "openface", "-q"])
    assert result.exit_code == 0, result.output
    record = mien.read(tmp_path / "of.csv").attrs["provenance"]
    assert any("pose_Rx = -pitch" in note for note in record["openface_conventions"])
