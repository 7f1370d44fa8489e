import numpy as np
import pytest

from mien.expression.aus import AU_NAMES, estimate_aus
from mien.face.blendshapes import BLENDSHAPE_INDEX, BLENDSHAPE_NAMES


def _blendshapes(**values):
    bs = np.zeros((1, len(BLENDSHAPE_NAMES)), np.float32)
    for name, v in values.items():
        bs[0, BLENDSHAPE_INDEX[name]] = v
    return bs


def _face(mouth_gap=0.0, eye_open=0.3):
    """Minimal mesh: mouth corners 100 px apart, eyes 40 px wide, given openings."""
    lm = np.zeros((1, 478, 3), np.float32)
    lm[0, 61, :2], lm[0, 291, :2] = (0, 0), (100, 0)
    lm[0, 13, :2], lm[0, 14, :2] = (50, 0), (50, mouth_gap * 100)
    for outer, inner, top, bottom, x0 in ((33, 133, 159, 145, 0), (263, 362, 386, 374, 60)):
        lm[0, outer, :2], lm[0, inner, :2] = (x0, -50), (x0 + 40, -50)
        lm[0, top, :2], lm[0, bottom, :2] = (x0 + 20, -50), (x0 + 20, -50 + eye_open * 40)
    return lm


def test_table_maps_blendshapes_to_aus():
    aus = dict(zip(AU_NAMES, estimate_aus(
        _blendshapes(mouthSmileLeft=0.8, mouthSmileRight=0.6, browInnerUp=0.5, jawOpen=0.7,
                     eyeBlinkLeft=0.2, eyeBlinkRight=0.4, noseSneerLeft=0.3, noseSneerRight=0.1),
        _face())[0]))
    assert np.isclose(aus["AU12"], 0.7)
    assert np.isclose(aus["AU01"], 0.5)
    assert np.isclose(aus["AU26"], 0.7)
    assert np.isclose(aus["AU45"], 0.3)
    assert np.isclose(aus["AU09"], 0.2)
    assert aus["AU04"] == 0.0


def test_au06_reads_the_eye_squint_and_never_au12():
    smile_squint = estimate_aus(_blendshapes(mouthSmileLeft=1, mouthSmileRight=1, eyeSquintLeft=0.6,
                                             eyeSquintRight=0.6), _face())[0]
    squint_only = estimate_aus(_blendshapes(eyeSquintLeft=0.6, eyeSquintRight=0.6), _face())[0]
    smile_only = estimate_aus(_blendshapes(mouthSmileLeft=1, mouthSmileRight=1), _face())[0]
    i = AU_NAMES.index("AU06")
    assert np.isclose(smile_squint[i], 0.6) and np.isclose(squint_only[i], 0.6)  # AU06 moves without AU12
    assert smile_only[i] == 0.0 and smile_only[AU_NAMES.index("AU12")] == 1.0


def test_au23_is_not_lip_pucker():
    pucker = estimate_aus(_blendshapes(mouthPucker=1.0), _face())[0]
    assert pucker[AU_NAMES.index("AU23")] == 0.0


def test_geometric_aus_lips_part_and_eyes_closed():
    i25, i43 = AU_NAMES.index("AU25"), AU_NAMES.index("AU43")
    closed_mouth = estimate_aus(_blendshapes(), _face(mouth_gap=0.0))[0]
    open_mouth = estimate_aus(_blendshapes(), _face(mouth_gap=0.3))[0]
    assert closed_mouth[i25] == 0.0 and open_mouth[i25] == 1.0
    open_eyes = estimate_aus(_blendshapes(), _face(eye_open=0.3))[0]
    shut_eyes = estimate_aus(_blendshapes(), _face(eye_open=0.02))[0]
    assert open_eyes[i43] == 0.0 and shut_eyes[i43] == 1.0


def test_all_intensities_are_clipped_to_unit_range():
    aus = estimate_aus(np.full((3, 52), 5.0, np.float32), np.random.default_rng(0).normal(size=(3, 478, 3)))
    assert aus.shape == (3, 20) and aus.min() >= 0 and aus.max() <= 1


def test_au_codes_are_parsed_with_sides_and_missing_codes():
    from mien.expression.au_eval import parse_aus

    assert parse_aus("1+4+L12+25") == {1, 4, 12, 25}
    assert parse_aus("R12+T24+B22") == {12, 24, 22}
    assert parse_aus("null") is None and parse_aus("") is None


def test_au_report_gives_known_answers_on_a_fixture():
    from mien.expression.au_eval import CodedSet, au_report

    coded = CodedSet(paths=[None] * 8, coded=[{12}, {12}, {12, 25}, set(), set(), {25}, set(), {12}])
    truth12 = coded.present("AU12")
    scores = np.stack([truth12 * 0.8 + 0.1, np.linspace(0, 1, 8)], 1).astype(np.float32)  # perfect, then arbitrary
    scores[6] = np.nan  # a face without a mesh is skipped
    report = au_report(scores, coded, names=("AU12", "AU25"))
    au12 = report["per_au"]["AU12"]
    assert report["faces"] == 7 and au12["positives"] == 4 and au12["auroc"] == 1.0
    assert au12["f1"] == 1.0 and au12["best_f1"] == 1.0 and 0.1 < au12["best_threshold"] <= 0.9
    au25 = report["per_au"]["AU25"]
    assert au25["positives"] == 2 and 0.0 <= au25["auroc"] <= 1.0
    assert report["mean_auroc"] is None  # no AU has 30 positives in this fixture


def test_learned_au_occurrence_is_a_probability_in_every_row(analyzer, astronaut):
    from mien.expression.au_model import load_model, thresholds

    assert load_model() is not None and thresholds().shape == (20,)
    faces = analyzer.analyze(astronaut)
    p = faces.au_prob[0]
    assert ((0 <= p) & (p <= 1)).all()
    assert p[AU_NAMES.index("AU12")] > 0.5 and p[AU_NAMES.index("AU25")] > 0.5  # a smile, lips apart
    assert p[AU_NAMES.index("AU43")] < 0.5  # eyes open
    row = faces.to_pandas(landmarks="none").iloc[0]
    assert row["AU12_p"] == pytest.approx(p[AU_NAMES.index("AU12")])


def test_eval_aus_command_on_a_coded_folder(tmp_path, astronaut):
    import json
    import subprocess
    import sys

    import cv2

    folder = tmp_path / "coded"
    (folder / "images").mkdir(parents=True)
    face = cv2.cvtColor(np.ascontiguousarray(astronaut[30:230, 120:330]), cv2.COLOR_RGB2BGR)
    rows = ["file,compound,aus,p_surprise,p_fear,p_disgust,p_happy,p_sad,p_anger"]
    for i in range(4):
        cv2.imwrite(str(folder / "images" / f"{i}.jpg"), cv2.resize(face, (100, 100)))
        rows.append(f"{i}.jpg,happily surprised,{'6+12+25' if i < 3 else 'null'},0,0,0,1,0,0")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "mien", "eval-aus", str(folder), "-o", str(out), "--json"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-1500:]
    report = json.loads(result.stdout)
    assert report["coded_faces"] == 3 and report["per_au"]["AU12"]["positives"] == 3
    assert (out / "aus.json").exists() and (out / "aus.png").stat().st_size > 1000
