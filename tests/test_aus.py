import numpy as np

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


def test_au06_uses_duchenne_squint_when_cheek_squint_is_silent():
    smile_squint = estimate_aus(_blendshapes(mouthSmileLeft=1, mouthSmileRight=1, eyeSquintLeft=0.6,
                                             eyeSquintRight=0.6), _face())[0]
    squint_only = estimate_aus(_blendshapes(eyeSquintLeft=0.6, eyeSquintRight=0.6), _face())[0]
    i = AU_NAMES.index("AU06")
    assert np.isclose(smile_squint[i], 0.6) and squint_only[i] == 0.0


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
