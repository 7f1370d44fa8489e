"""Real photos and clips (../shared/media): what a person sees in them is what mien reports.

Regression tests of the real-media issue: EXIF-rotated phone photos, a mixed folder to Parquet,
intact containers with estimated frame counts, variable frame rate, faces only where there are
faces, readable labels, provenance, CSV formula cells. Skips cleanly without the media folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import mien

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason=f"real media not present at {MEDIA}")

# EXIF orientation -> how a camera stores an upright picture (PIL transposes; their inverses undo them).
_STORE = {
    1: [], 2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180], 4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE], 6: [Image.Transpose.ROTATE_90], 7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_270],
}


def _mien(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "mien", *map(str, args)], capture_output=True, text=True, **kwargs)


def _phone_copy(upright: Image.Image, orientation: int, path: Path) -> Path:
    """Store `upright` as a camera with this EXIF orientation would (pixels turned, tag set)."""
    stored = upright
    for op in _STORE[orientation]:
        stored = stored.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, quality=95, exif=exif)  # PNG keeps the pixels exactly; JPEG re-encodes them
    return path


def _sorted_boxes(faces) -> np.ndarray:
    return faces.boxes[np.argsort(faces.boxes[:, 0])]


@pytest.fixture(scope="module")
def group_photo() -> Image.Image:
    return Image.open(MEDIA / "pyfeat_multi_face.jpg").convert("RGB")  # 1000x667: width != height


def test_every_exif_orientation_gives_the_upright_rows(analyzer, group_photo, tmp_path):
    upright = analyzer.analyze(_phone_copy(group_photo, 1, tmp_path / "o1.png"))
    assert len(upright) == 5 and upright.image_size == (667, 1000)
    for orientation in range(2, 9):
        faces = analyzer.analyze(_phone_copy(group_photo, orientation, tmp_path / f"o{orientation}.png"))
        assert faces.image_size == (667, 1000), orientation
        assert len(faces) == 5, orientation
        np.testing.assert_allclose(_sorted_boxes(faces), _sorted_boxes(upright), atol=1.0, err_msg=str(orientation))
        np.testing.assert_allclose(faces.landmarks[np.argsort(faces.boxes[:, 0])][..., :2],
                                   upright.landmarks[np.argsort(upright.boxes[:, 0])][..., :2], atol=1.0)
    # A phone's JPEG (pixels re-encoded when turned): the same faces, boxes within a few percent.
    jpeg = analyzer.analyze(_phone_copy(group_photo, 6, tmp_path / "o6.jpg"))
    sides = (upright.boxes[:, 2] - upright.boxes[:, 0])[np.argsort(upright.boxes[:, 0])]
    assert jpeg.image_size == (667, 1000) and len(jpeg) == 5
    assert (np.abs(_sorted_boxes(jpeg) - _sorted_boxes(upright)).max(1) < 0.1 * sides).all()


def test_a_huge_sideways_photo_reports_coordinates_in_its_upright_pixels(analyzer, group_photo, tmp_path):
    """Above the 4096 px analysis limit the image is shrunk; rows still use the upright original's pixels."""
    big = group_photo.resize((5000, 3335), Image.Resampling.LANCZOS)
    faces = analyzer.analyze(_phone_copy(big, 6, tmp_path / "big6.png"))
    small = analyzer.analyze(_phone_copy(group_photo, 1, tmp_path / "small.png"))
    assert faces.image_size == (3335, 5000) and len(faces) == 5
    sides = (small.boxes[:, 2] - small.boxes[:, 0])[np.argsort(small.boxes[:, 0])]
    # Other pixels (resampled twice), so detections move a little; a wrong frame would be off by 1.5x.
    assert (np.abs(_sorted_boxes(faces) / 5.0 - _sorted_boxes(small)).max(1) < 0.1 * sides).all()
    # Drawn on the analysed (shrunk) pixels, boxes land where the faces are there.
    from mien.io.images import load_image

    loaded = load_image(tmp_path / "big6.png")
    shown = faces.scaled_to(loaded.rgb.shape[:2])
    np.testing.assert_allclose(_sorted_boxes(shown) * (5000 / loaded.rgb.shape[1]), _sorted_boxes(faces), atol=0.1)


def test_faces_only_where_there_are_faces(analyzer):
    assert len(analyzer.analyze(MEDIA / "pyfeat_multi_face.jpg")) == 5  # the sky face is gone
    assert len(analyzer.analyze(MEDIA / "pyfeat_free-mountain-vector-01.jpg")) == 0
    single = analyzer.analyze(MEDIA / "pyfeat_single_face.jpg")
    assert len(single) == 1 and single.top_expression[0] == "happy"


def test_mixed_folder_to_parquet_and_csv_with_provenance(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(MEDIA / "pyfeat_free-mountain-vector-01.jpg", folder / "a_no_face.jpg")  # first: no face
    shutil.copy(MEDIA / "pyfeat_multi_face.jpg", folder / "b_group.jpg")
    shutil.copy(MEDIA / "pyfeat_single_face.jpg", folder / "c_one.jpg")
    for suffix in (".parquet", ".csv", ".jsonl"):
        out = tmp_path / f"rows{suffix}"
        result = _mien("analyze", folder, "-o", out, "-q")
        assert result.returncode == 0, result.stderr
        from mien.io.table import read_table

        table = read_table(out)
        assert table.groupby("source")["face_found"].sum().tolist() == [0, 5, 1]
        info = _mien("info", out, "--json")
        assert info.returncode == 0, info.stderr
        record = json.loads(info.stdout)
        assert record["options"]["expression_prior"] == "natural" and record["options"]["mode"] == "auto"
        assert {"face_landmarker", "expression"} <= set(record["models"])
        assert [Path(i["source"]).name for i in record["inputs"]] == ["a_no_face.jpg", "b_group.jpg", "c_one.jpg"]
        assert "LiteRT" in record["mesh"]
    shown = _mien("info", tmp_path / "rows.parquet").stdout
    assert "mesh: face_landmarker.task mesh + blendshape networks on LiteRT" in shown and "Russell" in shown
    import pyarrow.parquet as pq

    schema = pq.read_schema(tmp_path / "rows.parquet")
    assert str(schema.field("expression_blend").type) == "string" and str(schema.field("flag_blurry").type) == "bool"


def test_write_failure_is_one_line_and_keeps_rows(tmp_path):
    out = tmp_path / "rows.csv"
    out.mkdir()  # a folder where the table should go
    result = _mien("analyze", MEDIA / "pyfeat_single_face.jpg", "-o", out, "-q")
    assert result.returncode == 1
    assert "cannot write the table" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_csv_cells_that_look_like_formulas_are_escaped(tmp_path):
    names = ["=cmd|' -C calc'!A0.jpg", "+1.jpg", "-2.jpg", "@sum.jpg", "plain.jpg"]
    for name in names:
        shutil.copy(MEDIA / "pyfeat_single_face.jpg", tmp_path / name)
    out = tmp_path / "rows.csv"
    result = _mien("analyze", *[tmp_path / n for n in names], "-o", out, "-q", "--landmarks", "none")
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()[1:]
    assert len(lines) == len(names)  # full paths start with "/": safe as they are
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(MEDIA / "pyfeat_single_face.jpg", bare / "=HYPERLINK(1).jpg")
    result = subprocess.run([sys.executable, "-m", "mien", "analyze", "=HYPERLINK(1).jpg", "-o", "r.csv", "-q"],
                            cwd=bare, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    row = pd.read_csv(bare / "r.csv").iloc[0]
    assert row["source"] == "'=HYPERLINK(1).jpg"


def test_escape_formulas_covers_every_dangerous_start():
    import pyarrow as pa

    from mien.io.writer import escape_formulas

    cells = ["=a", "+b", "-c", "@d", "\tf", "\rg", "ok", None]
    escaped = escape_formulas(pa.table({"source": cells})).column("source").to_pylist()
    assert escaped == ["'=a", "'+b", "'-c", "'@d", "'\tf", "'\rg", "ok", None]


def test_labels_never_overlap_and_stay_on_the_image(analyzer):
    from mien.report.annotate import _label, annotate, layout_labels

    faces = analyzer.analyze(MEDIA / "pyfeat_multi_face.jpg")
    labels = [_label(faces, i, 3) for i in range(len(faces))]
    spots, _ = layout_labels(faces.boxes, labels, 0.65, 1000, 667)
    rects = [s[0] for s in spots]
    for k, (x1, y1, x2, y2) in enumerate(rects):
        assert 0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 667
        for other in rects[k + 1:]:
            assert not (x1 < other[2] and other[0] < x2 and y1 < other[3] and other[1] < y2)
    assert [s[3][-1].split(" ")[0] for s in spots] == [f"#{i}" for i in range(len(faces))]  # numbered as face_id
    crowded = np.repeat(faces.boxes[:1], 12, 0) + np.arange(12)[:, None] * np.array([8, 0, 8, 0], np.float32)
    spots, legend = layout_labels(crowded, [labels[0]] * 12, 0.65, 1000, 667)
    assert legend  # no room beside twelve stacked faces: the rest go to the legend
    drawn = annotate(np.asarray(Image.open(MEDIA / "pyfeat_multi_face.jpg").convert("RGB")), faces)
    assert drawn.shape[:2] == (667, 1000)


def test_intact_clips_exit_zero_with_their_real_frames(tmp_path):
    out = tmp_path / "none.csv"
    result = _mien("video", MEDIA / "pyfeat_no_face.mp4", "-o", out, "-q")
    assert result.returncode == 0, result.stderr  # container says 98 frames, holds 95: not damage
    assert "truncated" not in result.stderr and "fps, 98 frames" not in result.stderr  # -q: no source line
    table = pd.read_csv(out)
    assert len(table) == 95 and not table["face_found"].any()
    assert json.loads((tmp_path / "none.csv.meta.json").read_text())["inputs"][0]["sha256"]
    times = table["time_s"].to_numpy()
    np.testing.assert_allclose(np.diff(times), 1 / 24, atol=2e-3)  # its real 24 fps, not the header's 23.67
    # The timeline files of a video without faces have their headers (pandas cannot read an empty file) ...
    for name in ("segments", "events", "tracks"):
        assert pd.read_csv(tmp_path / f"none.{name}.csv").empty
    # ... and the API reads them back (it used to raise EmptyDataError on the tracks file).
    rows = mien.analyze_video(MEDIA / "pyfeat_no_face.mp4", progress=False)
    assert len(rows) == 95 and "frames" in rows.attrs["tracks"].columns and rows.attrs["tracks"].empty


def test_one_person_one_track_and_a_sad_then_happy_clip(tmp_path):
    out = tmp_path / "pexels.parquet"
    result = _mien("video", MEDIA / "pyfeat_WolfgangLanger_Pexels.mp4", "-o", out)
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    assert len(table) == 472 and table["face_found"].all() and set(table["track_id"]) == {0}
    assert "472 frames in" in result.stdout and "fps), 1 track, 472 rows" in " ".join(result.stdout.split())
    segments = pd.read_csv(tmp_path / "pexels.segments.csv")
    long = segments[segments["duration_s"] >= 3.0]
    assert long["expression"].tolist() == ["sad", "happy"]
    assert long.iloc[0]["end_s"] < long.iloc[1]["start_s"] + 1e-6
    # The compound reading is smoothed like the expression: it switches far less often frame to frame.
    switches = {c: int((table[c].fillna("-").to_numpy()[1:] != table[c].fillna("-").to_numpy()[:-1]).sum())
                for c in ("compound", "compound_smooth")}
    assert switches["compound_smooth"] <= switches["compound"] / 2, switches  # measured 5 against 20
    named = table["compound_smooth"].notna()
    assert table.loc[named, "compound_confidence_smooth"].between(0, 1).all()
    assert table.loc[~named, "compound_confidence_smooth"].isna().all()


def test_face_then_cartoon_clip_tracks_one_person_then_nobody(tmp_path):
    out = tmp_path / "rows.parquet"
    result = _mien("video", MEDIA / "pyfeat_face_noface.mov", "-o", out, "--every", "2")
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    faces = table[table["face_found"]]
    assert faces["track_id"].nunique() == 1
    assert faces["time_s"].max() < table["time_s"].max() - 1.0  # the cartoon at the end has no face rows
    assert not table.loc[table["time_s"] > faces["time_s"].max(), "face_found"].any()


def test_variable_frame_rate_file_keeps_its_timestamps(tmp_path):
    av = pytest.importorskip("av")
    import fractions

    from mien.video.reader import open_video

    path = tmp_path / "vfr.mkv"
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=30)
    stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
    stream.time_base = fractions.Fraction(1, 1000)
    stamps, t = [], 0.0
    for fps in (10, 30, 5):  # one second at each rate
        for _ in range(fps):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), len(stamps) * 5 % 255, np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), stream.time_base
            stamps.append(round(t, 3))
            for packet in stream.encode(frame):
                container.mux(packet)
            t += 1.0 / fps
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    reader = open_video(path)
    frames = list(reader)
    assert [round(f.time_s, 3) for f in frames] == stamps and not reader.truncated
    assert [round(f.time_s, 2) for f in open_video(path, fps=5)] == [round(0.2 * k, 2) for k in range(15)]
    window = [round(f.time_s, 3) for f in open_video(path, start_s=1.5, end_s=2.5)]
    assert window == [s for s in stamps if 1.5 <= s < 2.5]
    result = _mien("video", path, "-o", tmp_path / "vfr.csv", "--fps", "5")
    assert result.returncode == 0, result.stderr
    assert pd.read_csv(tmp_path / "vfr.csv")["time_s"].round(2).tolist() == [round(0.2 * k, 2) for k in range(15)]


def test_report_on_photos_and_a_clip(tmp_path):
    out = tmp_path / "photos.html"
    result = _mien("report", MEDIA / "pyfeat_multi_face.jpg", MEDIA / "pyfeat_free-mountain-vector-01.jpg", "-o", out)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.count("face #") >= 5 and "face #5" not in text and "no face found" in text
    info = json.loads(_mien("info", out, "--json").stdout)
    assert len(info["inputs"]) == 2 and info["models"]["expression"]["sha256"]
    clip = tmp_path / "clip.html"
    result = _mien("report", MEDIA / "pyfeat_single_face.mp4", "-o", clip)
    assert result.returncode == 0, result.stderr
    assert "1 person tracked" in clip.read_text()


def test_open_set_thresholds_are_fitted_per_prior():
    from conftest import needs_dataset
    from mien.expression import openset
    from mien.expression.classifier import ExpressionClassifier
    from mien.face.mesh import MeshEstimator
    from mien.expression.crop import crop_from_face_image
    from mien.io.images import load_image
    from mien.datasets.expressions import read_ferplus
    from mien.expression.classes import PRIORS

    root = needs_dataset("ferplus")
    valid = read_ferplus(root, "valid", "majority")
    paths = valid.paths[::9][:300]
    mesh = MeshEstimator(workers=1)
    shipped = ExpressionClassifier()
    try:
        crops, blends = zip(*[crop_from_face_image(mesh, load_image(p).rgb, shipped.input_size, shipped.colour)[:2]
                              for p in paths])
    finally:
        mesh.close()
    crops, blends = np.stack(crops), np.stack(blends)
    shares = {}
    for prior in PRIORS:
        classifier = ExpressionClassifier(prior=prior)
        limits = openset.load_thresholds(prior)
        logits = classifier.logits(crops, blends)
        from mien.expression.calibration import softmax

        probs = softmax(logits, classifier.temperature)
        status = openset.statuses(probs, openset.energy(logits, classifier.temperature), np.zeros(len(probs), bool),
                                  limits["unknown_below"])
        shares[prior] = {s: status.count(s) / len(status) for s in openset.STATUSES}
        assert 0.0 < shares[prior]["unknown"] <= 0.12, shares  # fitted to call ~5% of valid faces unknown
        assert shares[prior]["known"] >= 0.6, shares
    assert openset.load_thresholds("natural") != openset.load_thresholds("balanced")
    with pytest.raises(ValueError, match="no open-set thresholds"):
        openset.load_thresholds("uniform")


@pytest.mark.parametrize("name", ["pyfeat_noface_face.mov", "liveportrait_d3.mp4", "liveportrait_d10.mp4",
                                  "pyfeat_single_face.mp4"])
def test_every_one_person_clip_is_one_track_and_exits_zero(tmp_path, name):
    out = tmp_path / "rows.parquet"
    result = _mien("video", MEDIA / name, "-o", out, "--every", "3")
    assert result.returncode == 0, result.stderr
    assert "truncated" not in result.stderr
    faces = pd.read_parquet(out).query("face_found")
    assert len(faces) > 10 and faces["track_id"].nunique() == 1, faces["track_id"].value_counts().to_dict()


def test_a_video_does_not_carry_last_bit_detector_differences(monkeypatch):
    """Two float runtimes (or CPUs) give BlazeFace outputs that differ in their last bits (MediaPipe's own detector
    and mien's: 3.6e-7 in scores, 1e-4 px in keypoints). A followed face is framed from its previous mesh, so such a
    difference used to be carried and grow to the clip's jitter (0.05 in probabilities on this clip); snapped
    mesh regions (`mien.face.mesh_net.REGION_STEP_PX`) absorb it: the rows are identical."""
    from mien.face import blazeface

    clip = MEDIA / "pyfeat_single_face.mp4"
    plain = mien.analyze_video(clip, progress=False)
    detect = blazeface.BlazeFace.detect

    def nudged(self, rgb):
        rows, scores = detect(self, rgb)
        return rows + np.float32(1e-4) * (np.arange(16, dtype=np.float32) % 4), scores * np.float32(1 - 1e-6)

    monkeypatch.setattr(blazeface.BlazeFace, "detect", nudged)
    moved = mien.analyze_video(clip, progress=False)
    assert len(plain) == len(moved) == 72 and plain.face_found.all()
    columns = [c for c in plain.columns if c.startswith(("expr_", "AU", "box_", "pose_"))]
    pd.testing.assert_frame_equal(plain[columns], moved[columns])


def test_regions_snap_to_a_fine_grid_and_an_unknown_stays_unknown():
    from mien.face.mesh_net import ANGLE_STEP, REGION_STEP_PX, Region

    region = Region(100.0 + 1e-4, 50.0 - 1e-4, 64.0 + 3e-4, 0.1 + 1e-7)
    assert (region.cx, region.cy, region.side) == (100.0, 50.0, 64.0)
    assert region.angle == round(0.1 / ANGLE_STEP) * ANGLE_STEP
    assert Region(100.02, 50.0, 64.0).cx == 100.0 + REGION_STEP_PX  # a real move is kept, to the nearest step
    unknown = Region(float("nan"), 50.0, float("inf"))
    assert np.isnan(unknown.cx) and np.isinf(unknown.side)  # no exception: the mesh decides what to do with it
