"""Analysis on tables (summaries, group tests) and the self-contained HTML report."""

import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mien.analysis import compare_groups, summarize
from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS


def _table(rng, n, happy_share, au12):
    rows = pd.DataFrame({"face_found": True, "expression": np.where(rng.random(n) < happy_share, "happy", "neutral")})
    for c in EXPRESSIONS:
        rows[f"expr_{c}"] = (rows["expression"] == c).astype(float)
    for au in AU_NAMES:
        rows[au] = rng.uniform(0, 0.2, n)
    rows["AU12"] = np.clip(rng.normal(au12, 0.1, n), 0, 1)
    rows["valence"], rows["arousal"] = rows["expr_happy"] * 0.8, 0.1
    return rows


def test_summarize_and_compare_groups_find_the_planted_difference():
    rng = np.random.default_rng(0)
    a, b = _table(rng, 60, 0.2, 0.2), _table(rng, 60, 0.8, 0.6)
    a["group"], b["group"] = "A", "B"
    table = pd.concat([a, b, pd.DataFrame({"face_found": [False], "group": ["A"]})], ignore_index=True)
    summary = summarize(table, by="group").set_index("group")
    assert summary.loc["A", "faces"] == 60  # the no-face row is not a face
    assert summary.loc["B", "happy_share"] == pytest.approx((b["expression"] == "happy").mean())
    result = compare_groups(table, "group", "A", "B").set_index("measure")
    assert result.loc["AU12", "p_holm"] < 1e-6 and result.loc["AU12", "effect_rank_biserial"] > 0.8
    assert result.loc["AU01", "p_holm"] > 0.05  # no difference planted there
    assert (result["p_holm"] >= result["p_value"]).all()
    with pytest.raises(ValueError, match="at least two faces"):
        compare_groups(table, "group", "A", "C")


def _mien(*args):
    return subprocess.run([sys.executable, "-m", "mien", *map(str, args)], capture_output=True, text=True)


def _no_external_requests(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.IGNORECASE)
    assert "@import" not in page and "<script" not in page.lower()


def _screenshot(page, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium not installed (Debian package chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    import cv2

    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1600, 1200)
    assert image.std() > 20  # rendered content, not a blank page


def test_image_report_is_self_contained_and_renders(tmp_path, astronaut):
    import cv2

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "astronaut.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    (folder / "broken.jpg").write_bytes(b"not an image")
    rules = tmp_path / "smiles.toml"
    rules.write_text('[expressions.duchenne_smile]\nall = ["AU06_p", "AU12_p"]\n')
    out = tmp_path / "report.html"
    result = _mien("report", folder, "-o", out, "--expressions", rules)
    assert result.returncode == 1 and "broken.jpg" in result.stderr  # the bad input named, the report still made
    page = out.read_text()
    _no_external_requests(page)
    for part in ("astronaut.png", "happy", "AU12 lip corner puller", "relied most on the mouth", "How to read this",
                 "Limits", "data:image/png;base64", "broken.jpg", "custom: duchenne_smile 0.", "duchenne_smile (mean)"):
        assert part in page, part
    _screenshot(out, tmp_path)


def test_image_report_reads_face_chips_in_crops_mode_and_a_video_refuses_it(tmp_path, astronaut):
    import cv2

    folder = tmp_path / "chips"
    folder.mkdir()
    chip = cv2.resize(astronaut[40:220, 130:280], (50, 60), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(folder / "chip.png"), cv2.cvtColor(chip, cv2.COLOR_RGB2BGR))
    out = tmp_path / "chips.html"
    result = _mien("report", folder, "--mode", "crops", "-o", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "chip.png" in out.read_text() and "happy" in out.read_text()
    refused = _mien("report", tmp_path / "talk.mp4", "--mode", "crops", "-o", tmp_path / "talk.html")
    assert refused.returncode == 2 and "mode 'crops'" in refused.stderr


def test_video_report_has_people_timelines_and_segments(tmp_path):
    from mien.video import synthetic as syn

    video = syn.write_video(tmp_path / "two.mp4", syn.frames(syn.crossing_scene(2.0), 2.0))
    out = tmp_path / "video.html"
    result = _mien("report", video, "-o", out, "--expressions", "compound")
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    _no_external_requests(page)
    for part in ("Person 0", "Person 1", "Expression segments", "timeline of person", "Key frame", "How to read this",
                 "custom expressions of person 0", "happily_surprised (mean)"):
        assert part in page, part
    _screenshot(out, tmp_path)


def test_image_report_gives_each_face_its_reading_calibrated_to_the_person_s_rest(tmp_path):
    """`mien report --reference`: KDEF F02's frontal neutral reads sad, calibrated to their half-left rest neutral;
    a person whose neutral photo shows no face is listed as not calibrated (exit 1), the report still written."""
    import cv2

    from conftest import needs_dataset

    kdef = needs_dataset("kdef")
    study = tmp_path / "study"
    (study / "F02").mkdir(parents=True)
    (study / "blank").mkdir()
    shutil.copy(kdef / "HL" / "neutral" / "AF02NEHL.jpg", study / "F02" / "neutral.jpg")
    shutil.copy(kdef / "S" / "neutral" / "AF02NES.jpg", study / "F02")
    cv2.imwrite(str(study / "blank" / "neutral.png"), np.full((200, 320, 3), 128, np.uint8))
    out = tmp_path / "report.html"
    run = subprocess.run([sys.executable, "-m", "mien", "report", str(study), "--reference", str(study), "-o", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert "blank: no face found in the neutral photo" in run.stderr
    page = out.read_text()
    card = page[page.index("<h2>AF02NES.jpg"):]
    card = card[:card.index("<h2>", 4)]  # that photo's section only
    assert re.search(r"face #0: sad \(", card) and "calibrated to their rest: neutral" in card
    assert "People not calibrated" in page
