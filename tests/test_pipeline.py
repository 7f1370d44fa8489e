"""The whole image pipeline on real images with the real models."""

from pathlib import Path

import cv2
import numpy as np
import pytest

import mien
from conftest import collage, needs_dataset
from mien.expression.aus import AU_NAMES
from mien.face.align import align_face, align_matrix, five_points, template


def unsmile(img: np.ndarray, landmarks: np.ndarray, shift: float = 12.0, radius: float = 14.0) -> np.ndarray:
    """Pull the mouth corners down and in with a smooth local warp: the smile goes away."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x, map_y = xx.copy(), yy.copy()
    centre_x = (landmarks[61, 0] + landmarks[291, 0]) / 2
    for idx in (61, 291):
        cx, cy = landmarks[idx, :2]
        dx, dy = (centre_x - cx) * 0.15, shift
        weight = np.exp(-((xx - cx - dx) ** 2 + (yy - cy - dy) ** 2) / (2 * radius ** 2))
        map_x -= dx * weight
        map_y -= dy * weight
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_astronaut_one_face_full_measurements(analyzer, astronaut):
    faces = analyzer.analyze(astronaut)
    assert len(faces) == 1
    lm = faces.landmarks[0]
    assert lm.shape == (478, 3) and np.isfinite(lm).all()
    x1, y1, x2, y2 = faces.boxes[0]
    inside = (lm[:, 0] > x1 - 20) & (lm[:, 0] < x2 + 20) & (lm[:, 1] > y1 - 30) & (lm[:, 1] < y2 + 20)
    assert inside.mean() > 0.95
    assert np.all(np.abs(faces.pose[0]) < 20)  # near-frontal portrait
    assert np.all(np.abs(faces.gaze[0]) < 15)  # looking at the camera
    assert faces.blendshapes.shape == (1, 52) and 0 <= faces.blendshapes.min() <= faces.blendshapes.max() <= 1
    assert not faces.flags.any()


def test_smile_raises_au12_and_smile_blendshapes(analyzer, astronaut):
    smiling = analyzer.analyze(astronaut)
    neutral = analyzer.analyze(unsmile(astronaut, smiling.landmarks[0]))
    au12 = AU_NAMES.index("AU12")
    assert smiling.aus[0, au12] > 0.6 > 0.2 > neutral.aus[0, au12]
    df_s, df_n = smiling.to_pandas(), neutral.to_pandas()
    assert df_s["bs_mouthSmileLeft"][0] > df_n["bs_mouthSmileLeft"][0] + 0.4


def test_happy_faces_smile_more_than_neutral_ones_in_affectnet(analyzer):
    root = needs_dataset("affectnet8") / "valid"
    au12 = {}
    for label in ("happy", "neutral"):
        values = []
        for path in sorted((root / label).glob("*.jpg"))[:25]:
            faces = analyzer.analyze(path)
            if len(faces):
                values.append(faces.aus[0, AU_NAMES.index("AU12")])
        au12[label] = np.mean(values)
    assert au12["happy"] > au12["neutral"] + 0.3


def test_mirroring_flips_yaw_and_roll_keeps_pitch(analyzer, astronaut):
    rotated = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), -12, 1.0), (512, 512))
    a = analyzer.analyze(rotated).pose[0]
    b = analyzer.analyze(rotated[:, ::-1]).pose[0]
    assert a[2] > 8 and b[2] < -8  # roll: clockwise in the image is positive
    assert abs(a[2] + b[2]) < 3
    assert abs(a[1] - b[1]) < 3


def test_yaw_sign_follows_the_nose(analyzer):
    """A face turned to the image's right has its nose right of the eye midline."""
    root = needs_dataset("utkface")
    checked = 0
    for path in sorted(root.glob("*.jpg"))[:60]:
        faces = analyzer.analyze(path)
        if len(faces) != 1:
            continue
        lm = faces.landmarks[0]
        offset = (lm[1, 0] - (lm[33, 0] + lm[263, 0]) / 2) / abs(lm[263, 0] - lm[33, 0])
        if abs(offset) > 0.1:
            assert np.sign(faces.pose[0, 0]) == np.sign(offset)
            checked += 1
    assert checked >= 3


def test_multi_face_image_gives_several_rows(analyzer, face_crop):
    group = collage(face_crop, rows=2, cols=3, tile_px=150)
    table = analyzer.analyze(group).to_pandas()
    assert len(table) == 6
    assert table["face_found"].all() and table["face_id"].tolist() == list(range(6))
    assert table["box_score"].min() > 0.5


def test_bgr_and_pil_inputs_match_rgb(analyzer, astronaut):
    from PIL import Image

    rgb = analyzer.analyze(astronaut)
    bgr = analyzer.analyze(astronaut[:, :, ::-1].copy(), color="bgr")
    pil = analyzer.analyze(Image.fromarray(astronaut))
    np.testing.assert_allclose(rgb.boxes, bgr.boxes, atol=1)
    np.testing.assert_allclose(rgb.boxes, pil.boxes, atol=1)


def test_every_crop_of_a_face_derives_from_one_alignment_fit(analyzer, astronaut):
    from mien.expression.crop import EXPR_MARGIN, EXPR_SHIFT
    from mien.face.align import unit_matrix

    turned = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), 25, 0.8), (512, 512))
    faces = [*analyzer.analyze(astronaut).landmarks, *analyzer.analyze(turned).landmarks]
    assert len(faces) == 2
    for landmarks in faces:
        unit = unit_matrix(landmarks)
        for size, margin, shift in ((112, 0.2, None), (128, EXPR_MARGIN, EXPR_SHIFT), (112, 0.0, None), (96, 0.5, 0.1)):
            direct, _ = cv2.estimateAffinePartial2D(five_points(landmarks), template(size, margin, shift),
                                                    method=cv2.LMEDS)
            derived = align_matrix(landmarks, size, margin, shift, unit=unit)
            points = landmarks[:, :2]
            moved = lambda m: points @ m[:, :2].T + m[:, 2]  # noqa: E731
            assert np.abs(moved(derived) - moved(direct)).max() < 1e-3  # pixels of the crop


def test_alignment_puts_eyes_and_mouth_on_the_template(analyzer, astronaut):
    faces = analyzer.analyze(astronaut)
    crop = align_face(astronaut, faces.landmarks[0], size=112)
    assert crop.shape == (112, 112, 3)
    again = mien.Analyzer(mode="fast")
    try:
        aligned_faces = again.analyze(cv2.resize(crop, (224, 224)))
    finally:
        again.close()
    error = np.linalg.norm(five_points(aligned_faces.landmarks[0]) / 2 - template(112), axis=1)
    # A similarity transform fits the five points in the least-squares sense: eyes land
    # within a few pixels; the smiling mouth is wider than the template's.
    assert error[:2].max() < 4 and error.mean() < 5


def test_quality_flags(analyzer, astronaut, face_crop):
    blurred = analyzer.analyze(cv2.GaussianBlur(astronaut, (0, 0), 3))
    assert len(blurred) == 1 and blurred.flag("blurry")[0]
    edge = analyzer.analyze(np.ascontiguousarray(astronaut[:, 205:]))  # face cut by the left edge
    assert len(edge) == 1 and edge.flag("partial")[0]
    tiny = collage(face_crop, rows=1, cols=1, tile_px=70, gap=200)
    small = analyzer.analyze(tiny)
    assert len(small) == 1 and small.flag("small_face")[0]


def test_large_image_reports_original_coordinates(analyzer, astronaut):
    big = cv2.resize(astronaut, (5120, 5120), interpolation=cv2.INTER_LINEAR)
    faces = analyzer.analyze(big)
    small = analyzer.analyze(astronaut)
    assert faces.image_size == (5120, 5120)
    # the detectors see the two at different resolutions: boxes agree within a few pixels of the small image
    np.testing.assert_allclose(faces.boxes[0] / 10, small.boxes[0], atol=6)


def test_require_mesh_false_keeps_unconfirmed_detections(face_crop):
    with mien.Analyzer(mode="thorough", require_mesh=False) as a:
        faces = a.analyze(collage(face_crop, rows=1, cols=2, tile_px=150))
    assert len(faces) == 2 and faces.has_mesh.all()


@pytest.mark.parametrize("colour", [(240, 240, 240), (70, 110, 160), (30, 30, 35)])
def test_face_mask_sets_the_occluded_flag(analyzer, astronaut, colour):
    clean = analyzer.analyze(astronaut)
    assert not clean.flag("occluded")[0]
    outline = [234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323,
               454, 345, 349, 195, 120, 116]  # mesh points round cheeks, under the eyes and the chin
    masked = astronaut.copy()
    cv2.fillPoly(masked, [clean.landmarks[0][outline, :2].astype(np.int32)], colour)
    faces = analyzer.analyze(masked)
    assert len(faces) == 1 and faces.flag("occluded")[0]
    assert faces.to_pandas()["flag_occluded"].tolist() == [True]


def test_mesh_networks_run_directly_agree_with_mediapipes_face_landmarker(analyzer):
    """mien runs the landmarker's mesh and blendshape networks itself on its own face regions: the same
    mesh within 2% of the eye distance, the same blendshapes and pose, on a non-square photo (MediaPipe's own
    outputs stored by benchmarks/tools/mediapipe_reference.py)."""
    from blazeface_views import views
    from mien.face.mesh_net import MeshNetworks
    from mien.face.pose import euler_from_transform

    reference = np.load(Path(__file__).parent / "data" / "landmarker_reference.npz")
    photo = np.ascontiguousarray(views()["whole"][:, 40:440])  # 512 x 400, as the reference was made
    points, shapes = reference["photo_points"], reference["photo_blendshapes"]
    faces = analyzer.analyze(photo)
    assert len(faces) == 1 and faces.has_mesh[0]
    eye_distance = np.linalg.norm(points[33] - points[263])
    assert np.linalg.norm(faces.landmarks[0, :, :2] - points, axis=1).mean() < 0.02 * eye_distance
    assert np.abs(faces.blendshapes[0] - shapes).mean() < 0.03
    # Pose against the landmarker on a crop centred on the face: for an off-centre face its matrix
    # also carries the wide-lens perspective it assumes for the whole picture (here 6 degrees of pitch).
    assert np.abs(faces.pose[0] - euler_from_transform(reference["centred_matrix"][None])[0]).max() < 3.0
    # Fed the landmarker's own points, the blendshape network gives the landmarker's scores: the point
    # table is MediaPipe's.
    mesh = np.zeros((478, 3), np.float32)
    mesh[:, :2] = points
    assert np.abs(MeshNetworks().blendshapes(mesh) - shapes).max() < 1e-3


def test_a_tilted_face_is_reframed_upright(analyzer, astronaut):
    """A face rolled by 40 degrees gets its region turned: the mesh's eye line follows the rotation."""
    plain = analyzer.analyze(astronaut)
    centre = tuple(float(v) for v in plain.landmarks[0, :, :2].mean(0))
    turned = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D(centre, -40, 1.0), astronaut.shape[1::-1])
    faces = analyzer.analyze(turned)
    assert len(faces) == 1 and faces.has_mesh[0]

    def eye_angle(points):
        d = points[263, :2] - points[33, :2]
        return np.degrees(np.arctan2(d[1], d[0]))

    assert abs(eye_angle(faces.landmarks[0]) - eye_angle(plain.landmarks[0]) - 40) < 3
    assert abs(faces.pose[0, 2] - plain.pose[0, 2] - 40) < 3  # roll: clockwise in the image is positive


@pytest.mark.parametrize("yaw, pitch, roll", [(0, 0, 0), (25, 0, 0), (0, -15, 0), (0, 0, 30), (-20, 10, -12)])
def test_transformation_matrix_recovers_a_known_head_pose(yaw, pitch, roll):
    """The canonical face turned by known angles and seen in a 640x480 picture: the fitted matrix gives
    those angles back, in mien's sign convention (yaw to the image's right, chin up, clockwise roll)."""
    from scipy.spatial.transform import Rotation

    from mien.face.geometry import canonical_face, facial_transforms
    from mien.face.pose import euler_from_transform

    vertices, _, _ = canonical_face()
    # Camera space (x right, y up, z towards the viewer): roll about z, yaw about y, pitch about x. A turn
    # about +x tips the nose down and one about +z is anticlockwise, hence the signs.
    turn = Rotation.from_euler("ZYX", [-roll, yaw, -pitch], degrees=True).as_matrix()
    seen = vertices @ turn.T
    mesh = np.zeros((478, 3), np.float32)
    mesh[:468, 0] = 320 + 9 * seen[:, 0]  # 9 px per cm, x right
    mesh[:468, 1] = 200 - 9 * seen[:, 1]  # y down in the picture
    mesh[:468, 2] = -9 * seen[:, 2]  # MediaPipe's z: smaller is nearer
    mesh[468:] = mesh[:10]  # iris points are not fitted
    angles = euler_from_transform(facial_transforms(mesh[None], (480, 640)))[0]
    assert np.allclose(angles, [yaw, pitch, roll], atol=0.5), angles


def test_crops_mode_reads_a_small_non_square_face_chip_in_its_own_pixels(analyzer, astronaut):
    """Mode "crops": no detector; the chip is the face, its landmarks come back in the chip's own pixels."""
    whole = analyzer.analyze(astronaut)
    top, left, h, w = 40, 130, 180, 150  # a tight, non-square chip around the head
    chip = cv2.resize(astronaut[top:top + h, left:left + w], (50, 60), interpolation=cv2.INTER_AREA)
    with mien.Analyzer(mode="crops") as crops:
        faces = crops.analyze(chip)
    assert len(faces) == 1 and faces.has_mesh[0] and faces.scores[0] == 1.0
    assert faces.image_size == (60, 50)
    expected = (whole.landmarks[0, :, :2] - [left, top]) * [50 / w, 60 / h]
    assert np.median(np.linalg.norm(faces.landmarks[0, :, :2] - expected, axis=1)) < 1.5  # px of a 50 px chip
    assert np.isfinite(faces.pose[0]).all() and abs(faces.pose[0] - whole.pose[0]).max() < 12
    table = faces.to_pandas()
    assert table.expression[0] == "happy" and table.AU12_p[0] > 0.5


def test_crops_mode_keeps_a_row_for_an_image_without_a_face():
    noise = np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8)
    with mien.Analyzer(mode="crops") as crops:
        faces = crops.analyze(noise)
    assert len(faces) == 1 and not faces.has_mesh[0] and faces.flag("no_mesh")[0]
    table = faces.to_pandas()
    assert np.isnan(table.expr_happy[0]) and table.box_w[0] == 48 and table.box_h[0] == 64


def test_crops_mode_reads_more_fer_plus_chips_than_detection():
    chips = sorted((needs_dataset("ferplus") / "test").glob("*.png"))[:120]
    read = {mode: mien.analyze(chips, mode=mode, landmarks="none", progress=False)
            .dropna(subset=["expression"]).source.nunique() for mode in ("auto", "crops")}
    assert read["crops"] >= 0.95 * len(chips) and read["crops"] >= read["auto"] + 4


def test_video_refuses_crops_mode():
    from mien.options import AnalyzerOptions, OptionsError, VideoOptions, video_options

    with pytest.raises(OptionsError, match="crops"):
        video_options(mode="crops")
    with pytest.raises(OptionsError, match="crops"):  # however the video's options are made
        VideoOptions(analyzer=AnalyzerOptions(mode="crops"))
