"""Explanations and honest outcomes: heatmaps, regions, rationales, unknown/uncertain, blends."""

import numpy as np
import pytest

from mien.explain.rationale import rationale
from mien.explain.regions import REGION_NAMES, area_shares, region_map, region_shares
from mien.explain.saliency import heatmap_to_image, occlusion_heatmap, overlay
from mien.expression import openset
from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS


@pytest.fixture(scope="module")
def smiling(analyzer, astronaut):
    faces = analyzer.analyze(astronaut)
    return faces, analyzer.explainer.crop(astronaut, faces.landmarks[0])


def test_heatmap_is_deterministic_and_looks_at_the_smile(analyzer, astronaut, smiling):
    faces, crop = smiling
    heat, target = occlusion_heatmap(analyzer.explainer, crop, faces.blendshapes[0])
    again, _ = occlusion_heatmap(analyzer.explainer, crop, faces.blendshapes[0])
    side = analyzer.explainer.input_size
    assert EXPRESSIONS[target] == "happy" and heat.shape == (side, side) and (heat >= 0).all()
    assert np.array_equal(heat, again)
    labels = region_map(faces.landmarks[0], side)
    assert set(np.unique(labels)) == set(range(len(REGION_NAMES)))  # every region is on the crop
    shares, areas = region_shares(heat, labels), area_shares(labels)
    assert sum(shares.values()) == pytest.approx(1.0)
    # The smile is where the evidence is: the mouth holds the largest share, well over its share of the area
    # (the RAF-DB-trained model also reads the brows: ~18% of the heat on ~11% of the area).
    assert max(shares, key=shares.get) == "mouth" and shares["mouth"] > 1.5 * areas["mouth"]
    # The face ResNet spreads some heat to the eyes and cheeks of a smile (Duchenne markers): the mouth leads
    # every other region (0.22 against 0.16 for the eyes), no longer all of them together (0.26).
    assert all(shares["mouth"] > 1.25 * shares[r] for r in ("eyes", "forehead", "nose"))
    on_image = heatmap_to_image(heat, faces.landmarks[0], astronaut.shape[:2])
    mouth = faces.landmarks[0][[13, 14], :2].mean(0).astype(int)
    assert on_image[mouth[1], mouth[0]] > 0 and on_image[5, 5] == 0  # on the face, nothing in the corner
    assert overlay(astronaut, on_image).shape == astronaut.shape


def test_rationale_names_the_evidence():
    aus = np.zeros(len(AU_NAMES))
    aus[AU_NAMES.index("AU12")], aus[AU_NAMES.index("AU06")] = 0.92, 0.41
    text = rationale("happy", 0.91, aus, {"mouth": 0.5, "cheeks": 0.2, "eyes": 0.1, "other": 0.2})
    assert text.startswith("happy (0.91): AU12 lip corner puller strong (0.92), AU06 cheek raiser moderate (0.41)")
    assert "brows relaxed" in text and "mouth (50%) and cheeks (20%)" in text
    surprise = rationale("surprise", 0.42, aus)
    assert "uncertain" in surprise and "not seen: AU01 inner brow raiser" in surprise
    assert rationale("neutral", 0.8, np.zeros(len(AU_NAMES))).startswith("neutral (0.80): no action unit above slight")


def test_energy_auroc_and_blend_names():
    assert openset.auroc([3, 4, 5], [0, 1, 2]) == 1.0 and openset.auroc([1, 1], [1, 1]) == 0.5
    assert openset.auroc([0, 2], [1, 3]) == pytest.approx(0.25)
    logits = np.array([[10.0, 0, 0], [0.0, 0, 0]])
    familiar, unfamiliar = openset.energy(logits)
    assert familiar > unfamiliar and unfamiliar == pytest.approx(np.log(3), abs=1e-5)
    assert openset.blend_name("surprise", "happy") == "happily surprised"
    assert openset.blend_name("anger", "sad") == "sadly angry"
    assert openset.blend_name("neutral", "sad") == "neutral + sad"
    probs = np.zeros((2, 8))
    probs[0, [EXPRESSIONS.index("happy"), EXPRESSIONS.index("surprise")]] = 0.55, 0.45
    probs[1, EXPRESSIONS.index("sad")] = 1.0
    assert openset.blends(probs, 0.3) == ["happily surprised", None]


def test_statuses():
    probs = np.full((4, 8), 0.01)
    probs[:, 0] = 0.93
    probs[2] = 1 / 8
    status = openset.statuses(probs, np.array([5.0, 0.1, 5.0, 5.0]), np.array([False, False, False, True]), 1.0)
    assert status == ["known", "unknown", "uncertain", "uncertain"]


def test_pipeline_reports_outcomes(analyzer, astronaut):
    row = analyzer.analyze(astronaut).to_pandas().iloc[0]
    assert row["expression_status"] == "known" and row["expression_blend"] is None
    assert row["expression_familiarity"] > openset.load_thresholds()["unknown_below"]


def test_explain_face_ties_heatmap_regions_and_rationale(analyzer, astronaut):
    from mien.explain.face import explain_face

    faces = analyzer.analyze(astronaut)
    why = explain_face(analyzer.explainer, astronaut, faces, 0)
    assert why.target == EXPRESSIONS.index("happy") and why.probability == pytest.approx(faces.expression[0].max())
    assert max(why.regions, key=why.regions.get) == "mouth"
    assert why.image_heat.shape == astronaut.shape[:2] and why.image_heat.max() > 0
    assert why.text.startswith("happy (") and "mouth" in why.text


def test_region_map_gives_each_face_pixel_its_nearest_region_vertex(analyzer, astronaut):
    from mien.explain.regions import REGIONS, crop_matrix, region_map

    landmarks = analyzer.analyze(astronaut).landmarks[0]
    labels = region_map(landmarks, 64)
    matrix = crop_matrix(landmarks, 64)
    pts = landmarks[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    vertices = [(v, k) for k, name in enumerate(REGIONS) for group in REGIONS[name] for v in group]
    face = labels < len(REGIONS)
    assert 0.3 < face.mean() < 0.95
    for y, x in zip(*np.nonzero(face)):
        distances = [((pts[v] - (x + 0.5, y + 0.5)) ** 2).sum() for v, _ in vertices]
        assert labels[y, x] == vertices[int(np.argmin(distances))][1]
