"""Per-person neutral calibration on real KDEF faces and through `mien calibrate`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import mien
from conftest import needs_dataset
from mien.expression.aus import AU_NAMES
from mien.expression.neutral import POPULATION_AU_NEUTRAL, STRENGTH


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _person(kdef: Path, person: str, tmp: Path) -> Path:
    """A reference CSV: the person's half-left neutral as their rest, their frontal photos to calibrate."""
    rows = [{"person": person, "path": str(kdef / "HL" / "neutral" / f"A{person}NEHL.jpg"), "neutral": 1}]
    rows += [{"person": person, "path": str(p), "neutral": 0} for p in sorted((kdef / "S").glob(f"*/A{person}*S.jpg"))]
    path = tmp / "people.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_face_that_reads_sad_at_rest_reads_neutral_calibrated(tmp_path):
    kdef = needs_dataset("kdef")
    reference = _person(kdef, "F02", tmp_path)
    paths = pd.read_csv(reference)["path"].tolist()
    calibrated = mien.analyze(paths, progress=False, reference=reference)
    frontal_neutral = calibrated.source.str.endswith("AF02NES.jpg")
    assert calibrated.loc[frontal_neutral, "expression"].item() == "sad"  # this person's rest reads sad
    assert calibrated.loc[frontal_neutral, "expression_cal"].item() == "neutral"
    assert calibrated.attrs["provenance"]["calibration"]["people"] == 1
    # calibrating the table afterwards is the same
    assert (mien.calibrate(calibrated, reference)["expression_cal"] == calibrated["expression_cal"]).all()
    happy = calibrated.source.str.endswith("AF02HAS.jpg")
    assert calibrated.loc[happy, "expression_cal"].item() == "happy"  # what is not rest stays what it was
    assert (calibrated["person"] == "F02").all()
    probabilities = calibrated[[c for c in calibrated.columns if c.startswith("expr_") and c.endswith("_cal")]]
    assert ((probabilities.sum(1) - 1).abs() < 1e-4).all()
    # the open-set status follows the calibrated reading: confident calibrated readings of trusted faces are known
    confident = probabilities.max(1) >= 0.5
    untrusted = calibrated[["flag_small_face", "flag_strong_pose", "flag_blurry", "flag_occluded"]].any(axis=1)
    expected = (confident & ~untrusted).map({True: "known", False: "uncertain"})
    unknown = calibrated["expression_status"] == "unknown"
    assert (calibrated.loc[~unknown, "expression_status_cal"] == expected[~unknown]).all()
    assert (calibrated.loc[unknown, "expression_status_cal"] == "unknown").all()


def test_mien_calibrate_writes_the_calibrated_columns_beside_the_others(tmp_path):
    kdef = needs_dataset("kdef")
    reference = _person(kdef, "F02", tmp_path)
    rows = tmp_path / "rows.csv"
    paths = pd.read_csv(reference)["path"].tolist()
    run = subprocess.run([sys.executable, "-m", "mien", "analyze", *paths, "-o", str(rows), "-q"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "calibrated.parquet"
    run = subprocess.run([sys.executable, "-m", "mien", "calibrate", str(rows), "--reference", str(reference), "-o",
                          str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    table = mien.read(out)
    assert {"expression", "expression_cal", "expr_anger_cal", "AU04_cal", "valence_cal", "person"} <= set(table.columns)
    assert table.loc[table.source.str.endswith("AF02NES.jpg"), "expression"].item() == "sad"
    assert table.loc[table.source.str.endswith("AF02NES.jpg"), "expression_cal"].item() == "neutral"
    assert table.attrs["provenance"]["calibration"]["people"] == 1


def test_mien_analyze_calibrates_with_a_folder_per_person_in_one_step(tmp_path):
    """`mien analyze --reference study/` with study/<person>/neutral.jpg (and a note that is no photo): the written
    table carries the calibrated columns and the summary shows the calibrated reading; without --output it is
    refused before any work."""
    import shutil

    kdef = needs_dataset("kdef")
    person = tmp_path / "study" / "F02"
    person.mkdir(parents=True)
    shutil.copy(kdef / "HL" / "neutral" / "AF02NEHL.jpg", person / "neutral.jpg")
    for photo in ("neutral/AF02NES.jpg", "happy/AF02HAS.jpg"):
        shutil.copy(kdef / "S" / photo, person)
    (person / "notes.txt").write_text("session 1")  # not a photo: left out of the reference
    rules = tmp_path / "rules.toml"
    rules.write_text('[expressions.looks_sad]\nall = ["expr_sad"]\n')
    out = tmp_path / "rows.csv"
    run = subprocess.run([sys.executable, "-m", "mien", "analyze", "--reference",  # no paths: the reference's photos
                          str(tmp_path / "study"), "--expressions", str(rules), "-o", str(out)], capture_output=True,
                         text=True, timeout=300, env={**__import__("os").environ, "COLUMNS": "80"})
    assert run.returncode == 0, run.stderr
    table = mien.read(out)
    rest = table.source.str.endswith("AF02NES.jpg")
    assert table.loc[rest, "expression"].item() == "sad" and table.loc[rest, "expression_cal"].item() == "neutral"
    # custom expressions are read again from the calibrated columns
    assert np.allclose(table["custom_looks_sad"], table["expr_sad"], atol=1e-5)
    assert np.allclose(table["custom_looks_sad_cal"], table["expr_sad_cal"], atol=1e-5)
    assert table.loc[rest, "custom_looks_sad"].item() > 0.5 > table.loc[rest, "custom_looks_sad_cal"].item()
    # AU probabilities: the person's own rest photo moves half way to the population's rest, in log-odds
    own = table.source.str.endswith("neutral.jpg")
    p, p_cal = (table.loc[own, [f"{au}{s}" for au in AU_NAMES]].to_numpy(np.float64)[0] for s in ("_p", "_p_cal"))
    expected = 1 / (1 + np.exp(-(_logit(p) - STRENGTH * (_logit(p) - POPULATION_AU_NEUTRAL))))
    assert np.allclose(p_cal, expected, atol=1e-4)
    assert (table["person"] == "F02").all()
    assert table.attrs["provenance"]["calibration"]["reference"] == str(tmp_path / "study")
    line = next(l for l in run.stdout.splitlines() if "AF02NES.jpg" in l)
    assert "sad" in line and "neutral" in line  # the summary's uncalibrated and calibrated readings
    assert run.stdout.strip().splitlines()[-1] == f"calibrated 3 of 3 faces (1 person or track) -> {out}"
    refused = subprocess.run([sys.executable, "-m", "mien", "analyze", str(tmp_path / "study"), "--reference",
                              str(tmp_path / "study")], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--reference needs --output" in refused.stderr


def test_a_reference_list_without_a_neutral_photo_is_refused(tmp_path):
    reference = tmp_path / "people.csv"
    reference.write_text("person,path,neutral\np1,a.jpg,0\n")
    rows = tmp_path / "rows.csv"
    rows.write_text("source\n")
    run = subprocess.run([sys.executable, "-m", "mien", "calibrate", str(rows), "--reference", str(reference), "-o",
                          str(tmp_path / "out.csv")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip() == f"mien: {reference}: no neutral photo marked (a person needs one to be calibrated)"


def test_a_person_whose_neutral_photo_gives_no_face_is_named_and_the_rest_still_written(tmp_path, astronaut):
    """A reference list naming a photo without a face, and one whose relative path misses the table (paths in the
    list are relative to its folder): one line per person, the table still written, exit 1; the API warns."""
    import cv2
    import numpy as np
    import pytest

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "blank.png"), np.full((200, 320, 3), 128, np.uint8))
    cv2.imwrite(str(photos / "smile.jpg"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    rows = tmp_path / "rows.csv"
    run = subprocess.run([sys.executable, "-m", "mien", "analyze", str(photos), "-o", str(rows), "-q"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    reference = photos / "people.csv"  # beside the photos: "smile.jpg" is photos/smile.jpg
    reference.write_text("person,path,neutral\nblank,blank.png,1\nblank,smile.jpg,0\nelse,photos/smile.jpg,1\n")
    out = tmp_path / "calibrated.csv"
    run = subprocess.run([sys.executable, "-m", "mien", "calibrate", str(rows), "--reference", str(reference), "-o",
                          str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 2, run.stderr
    assert lines[0].startswith(f"mien: {reference}: blank: no face found in the neutral photo ")
    assert lines[0].endswith("blank.png; their rows are not calibrated")
    assert lines[1].startswith(f"mien: {reference}: else: the neutral photo {photos / 'photos' / 'smile.jpg'} "
                               "does not exist (paths in a reference list are relative to its folder)")
    written = mien.read(out)
    assert len(written) == 2 and written["expression_cal"].isna().all()
    with pytest.warns(UserWarning, match="blank: no face found"):
        mien.calibrate(mien.read(rows), reference)


def _rest_then_smile(kdef: Path, tmp: Path) -> Path:
    """An mp4 of KDEF person F02 (whose frontal rest reads sad, although the expression network trained on their
    posed photos): 2 s neutral, 2 s happy, 2 s neutral, at 5 fps."""
    from mien.io.images import load_image
    from mien.video import synthetic as syn
    from mien.video.reader import VideoFrame

    rest, smile = (load_image(kdef / "S" / kind / f"AF02{code}S.jpg").rgb for kind, code in (("neutral", "NE"),
                                                                                           ("happy", "HA")))
    script = [rest] * 10 + [smile] * 10 + [rest] * 10
    return syn.write_video(tmp / "f02.mp4", (VideoFrame(i, i / 5, rgb) for i, rgb in enumerate(script)), fps=5)


def test_video_tracks_are_calibrated_from_their_rest_window(tmp_path):
    kdef = needs_dataset("kdef")
    clip = _rest_then_smile(kdef, tmp_path)
    out = tmp_path / "f02.parquet"
    run = subprocess.run([sys.executable, "-m", "mien", "video", str(clip), "-o", str(out), "-q", "--calibrate",
                          "0-2s", "--expressions", "compound"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    table = mien.read(out)
    assert {"expression_cal", "AU12_cal", "AU12_p_cal", "expression_smooth", "custom_happily_surprised",
            "custom_happily_surprised_cal"} <= set(table.columns)
    assert table["track_id"].nunique() == 1 and (table["person"] == "track 0").all()
    later_rest = table[table.time_s >= 4.0]
    assert (later_rest["expression"] == "sad").mean() > 0.5  # this person's rest reads sad...
    assert (later_rest["expression_cal"] == "neutral").all()  # ...and neutral once calibrated from 0-2 s
    smiles = table[(table.time_s >= 2.0) & (table.time_s < 4.0)]
    assert (smiles["expression_cal"] == "happy").all()
    calibration = table.attrs["provenance"]["calibration"]
    assert calibration["rest_windows"] == {"0": [0.0, 2.0]}
    # CSV keeps its provenance in a file beside the table: the calibrated one, not the video run's
    csv = tmp_path / "f02.csv"
    run = subprocess.run([sys.executable, "-m", "mien", "video", str(clip), "-o", str(csv), "-q", "--calibrate", "auto"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert mien.read(csv).attrs["provenance"]["calibration"]["window"] == "auto"


def test_automatic_rest_is_the_most_neutral_stretch_and_bad_windows_are_refused(tmp_path):
    kdef = needs_dataset("kdef")
    calibrated = mien.analyze_video(_rest_then_smile(kdef, tmp_path), progress=False, calibrate="auto")
    start, end = calibrated.attrs["calibration"]["rest_windows"][0]
    assert end - start == 2.0 and (end <= 2.2 or start >= 3.8)  # a rest stretch, not the smile
    assert (calibrated.loc[calibrated.time_s >= 4.0, "expression_cal"] == "neutral").all()
    assert calibrated.attrs["provenance"]["calibration"]["window"] == "auto"
    again = mien.calibrate(calibrated, window="auto")  # the same on a table already read
    assert again.attrs["calibration"] == calibrated.attrs["calibration"]
    assert (again["expression_cal"] == calibrated["expression_cal"]).all()
    run = subprocess.run([sys.executable, "-m", "mien", "calibrate", str(tmp_path / "none.parquet"), "--window", "5-2",
                          "-o", str(tmp_path / "x.csv")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "5-2" in run.stderr


def test_a_webcam_session_reads_custom_expressions_calibrated():
    """`mien serve --expressions` with the webcam: once a face's rest is taken, each reply carries the rules read
    again from the calibrated columns (KDEF F12's half-left rest reads sad)."""
    import time

    from mien.expression.rules import parse_rules
    from mien.server.live import LiveSession
    from server_helpers import jpeg_bytes
    from PIL import Image

    kdef = needs_dataset("kdef") / "HL"
    neutral = jpeg_bytes(np.asarray(Image.open(kdef / "neutral" / "AF12NEHL.jpg").convert("RGB")))
    session = LiveSession(rules=parse_rules('[expressions.looks_sad]\nall = ["expr_sad"]\n'))
    try:
        session.calibrate(0.5)
        deadline = time.monotonic() + 60
        while "custom_looks_sad_cal" not in session.process(neutral)["faces"][0]:
            assert time.monotonic() < deadline
        faces = [session.process(neutral)["faces"][0] for _ in range(7)]
    finally:
        session.close()
    for face in faces:  # the rules read the calibrated columns on every frame
        assert abs(face["custom_looks_sad"] - face["expr_sad"]) < 1e-5
        assert abs(face["custom_looks_sad_cal"] - face["expr_sad_cal"]) < 1e-5
    # a still photo's reading jitters from frame to frame with the tracked mesh: the verdict is the majority's
    assert sum(f["expression"] == "sad" for f in faces) >= 5
    assert sum(f["expression_cal"] == "neutral" for f in faces) >= 5
    assert all(f["custom_looks_sad_cal"] < f["custom_looks_sad"] - 0.1 for f in faces)


def test_a_reference_list_saved_by_a_spreadsheet_reads_as_written(tmp_path):
    """Excel's CSV: a byte-order mark, CRLF line ends, blank cells for "not neutral" (pandas then reads the column as
    floats, 1.0), or TRUE and x as marks: every neutral mark is kept, paths resolve relative to the list's folder."""
    from mien.expression.neutral import read_references

    numbers, words = tmp_path / "numbers.csv", tmp_path / "words.csv"
    numbers.write_bytes("\ufeffperson,path,neutral\r\nA,a_rest.jpg,1\r\nA,a_smile.jpg,\r\nB,b_rest.jpg,1\r\n"
                        "B,b_frown.jpg,\r\n".encode())
    words.write_bytes("\ufeffperson,path,neutral\r\nA,a_rest.jpg,TRUE\r\nA,a_smile.jpg,FALSE\r\nB,b_rest.jpg,x\r\n"
                      "B,b_frown.jpg,\r\n".encode())
    for path in (numbers, words):
        table = read_references(path)
        assert list(table["person"]) == ["A", "A", "B", "B"]
        assert list(table["neutral"]) == [True, False, True, False], path.name
        assert table["path"].iloc[0] == str((tmp_path / "a_rest.jpg").resolve())


def test_mien_calibrate_reads_a_batch_folder(tmp_path):
    kdef = needs_dataset("kdef")
    reference = _person(kdef, "F02", tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in pd.read_csv(reference)["path"]:
        (photos / Path(path).name).symlink_to(path)
    run = subprocess.run([sys.executable, "-m", "mien", "batch", str(photos), "-o", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "calibrated.parquet"
    run = subprocess.run([sys.executable, "-m", "mien", "calibrate", str(tmp_path / "out"), "--reference",
                          str(reference), "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    table = mien.read(out)
    assert len(table) == 8 and table["expression_cal"].notna().all()
    assert table.loc[table.source.str.endswith("AF02NES.jpg"), "expression_cal"].item() == "neutral"


def test_a_listed_photo_is_read_once_and_an_unreadable_rest_is_named(tmp_path, astronaut):
    """`mien analyze --reference people.csv` with no paths: a photo listed twice is one row, and a person whose
    neutral photo cannot be read is named as such (not as a wrong path)."""
    import cv2

    cv2.imwrite(str(tmp_path / "smile.jpg"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    (tmp_path / "broken.jpg").write_bytes((tmp_path / "smile.jpg").read_bytes()[:2000])
    reference = tmp_path / "people.csv"
    reference.write_text("person,path,neutral\na,smile.jpg,1\na,smile.jpg,0\nb,broken.jpg,1\n")
    out = tmp_path / "rows.csv"
    run = subprocess.run([sys.executable, "-m", "mien", "analyze", "--reference", str(reference), "-o", str(out), "-q"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert "broken.jpg: corrupt or truncated image" in run.stderr
    assert (f"mien: {reference}: b: the neutral photo {tmp_path / 'broken.jpg'} is not in the table (not analysed, "
            "or unreadable); their rows are not calibrated") in run.stderr
    table = mien.read(out)
    assert len(table) == 1 and table["expression_cal"].item() == "happy"
