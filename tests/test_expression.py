"""The shipped expression model: export fidelity, predictions on real faces, calibration, V/A."""

from pathlib import Path

import numpy as np
import pytest

from conftest import needs_dataset
from mien.expression.affect import valence_arousal
from mien.expression.aus import AU_NAMES
from mien.expression.calibration import fit_temperature, reliability, softmax
from mien.expression.classes import EXPRESSIONS, canonical_expression
from mien.expression.classifier import ExpressionClassifier
from mien.expression.metrics import classification_metrics
from mien.models import resolve
from test_pipeline import unsmile

REFERENCE = Path(__file__).parent / "data" / "expression_reference.npz"


@pytest.fixture(scope="module")
def classifier():
    return ExpressionClassifier()


def test_int8_onnx_follows_the_torch_model_it_was_made_from(classifier):
    # The shipped model is the exported one quantized to int8: same top class, logits within quantization
    # error (0.08 measured) of the torch model's, in one pass or averaged over each face and its mirror image
    # as the file says (`mien quantize --flip`); the other way when asked.
    ref = np.load(REFERENCE)
    assert classifier.flip == bool(classifier.metadata.get("flip_average"))
    other = ExpressionClassifier(flip=not classifier.flip)
    for model in (classifier, other):
        expected = ref["torch_logits_flip"] if model.flip else ref["torch_logits"]
        logits = model.logits(ref["crops"], ref["blendshapes"]) - model.shift  # torch's: no prior shift
        assert np.array_equal(logits.argmax(1), expected.argmax(1))
        np.testing.assert_allclose(logits, expected, atol=0.2)
    assert not np.allclose(ref["torch_logits_flip"], ref["torch_logits"], atol=0.05)  # the mirror does count
    assert "quantized" in classifier.metadata


def test_the_network_gives_regional_features_with_its_logits(classifier):
    """The features the AU model reads come from the same run as the logits: 128 channels x 9 face regions,
    averages of ReLU outputs; the explainer's float model has no such output."""
    ref = np.load(REFERENCE)
    logits, features = classifier.logits_and_features(ref["crops"], ref["blendshapes"])
    np.testing.assert_array_equal(logits, classifier.logits(ref["crops"], ref["blendshapes"]))
    assert features.shape == (len(ref["crops"]), 128 * 9) and features.min() >= 0 and features.std(0).mean() > 0
    assert not np.allclose(features[0], features[1])
    assert ExpressionClassifier(resolve("expression_float")).logits_and_features(ref["crops"][:1],
                                                                                 ref["blendshapes"][:1])[1] is None


def test_model_file_is_small_and_verified():
    path = resolve("expression")
    assert path.stat().st_size < 20e6


def test_probabilities_are_calibrated_distributions(classifier):
    ref = np.load(REFERENCE)
    probs = classifier.predict(ref["crops"], ref["blendshapes"])
    assert probs.shape == (len(ref["crops"]), 8)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert 0.3 < classifier.temperature < 5
    assert classifier.classes == EXPRESSIONS


def test_astronaut_smiles_and_loses_it_when_the_smile_is_warped_away(analyzer, astronaut):
    faces = analyzer.analyze(astronaut)
    probs = dict(zip(EXPRESSIONS, faces.expression[0]))
    assert faces.top_expression == ["happy"] and probs["happy"] > 0.6
    valence, arousal = faces.affect[0]
    assert valence > 0.3
    flat = analyzer.analyze(unsmile(astronaut, faces.landmarks[0], shift=24, radius=24))
    assert flat.expression[0, EXPRESSIONS.index("happy")] < probs["happy"] - 0.3
    assert flat.affect[0, 0] < valence


def test_table_has_expression_columns(analyzer, astronaut):
    table = analyzer.analyze(astronaut).to_pandas()
    for name in EXPRESSIONS:
        assert table[f"expr_{name}"].between(0, 1).all()
    assert table["expression"].tolist() == ["happy"]
    assert table["expression_confidence"].iloc[0] == pytest.approx(table["expr_happy"].iloc[0])


def test_ferplus_test_sample_accuracy(classifier):
    from mien.expression.evaluate import run_eval
    from mien.datasets.expressions import read_ferplus

    labelled = read_ferplus(needs_dataset("ferplus"), "test")
    run = run_eval(labelled.paths[:300], labelled.labels[:300], crops=True, classifier=classifier, progress=False)
    assert (run.probs.argmax(1) == run.labels).mean() > 0.75  # 0.80 measured; 80.6% on all of FER+ test


def test_shipped_temperature_lowers_ece_on_valid(classifier):
    from mien.expression.evaluate import collect_crops
    from mien.datasets.expressions import read_ferplus

    labelled = read_ferplus(needs_dataset("ferplus"), "valid")
    paths = labelled.paths[:800]
    items = [(c, b) for _, c, b, _, _ in collect_crops(paths, crops=True, progress=False, classifier=classifier)]
    logits = classifier.logits(np.stack([c for c, _ in items]), np.stack([b for _, b in items]))
    labels = labelled.labels[:800]
    before = reliability(softmax(logits), labels)["ece"]
    after = reliability(softmax(logits, classifier.temperature), labels)["ece"]
    assert after < before


def test_temperature_fit_repairs_overconfidence():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 4000)
    logits = rng.normal(0, 1, (4000, 8))
    right = rng.random(4000) < 0.7
    winner = np.where(right, labels, (labels + 1) % 8)
    logits[np.arange(4000), winner] += 8.0  # 70% accurate, ~99% confident
    t = fit_temperature(logits, labels)
    assert t > 1.5
    assert reliability(softmax(logits, t), labels)["ece"] < 0.5 * reliability(softmax(logits), labels)["ece"]


def test_metrics_on_a_known_confusion():
    # true: 3 happy, 2 sad, 1 anger; predicted: happy happy sad | sad happy | anger
    labels = np.array([1, 1, 1, 3, 3, 4])
    predicted = np.array([1, 1, 3, 3, 1, 4])
    probs = np.eye(8)[predicted] * 0.9 + 0.1 / 8
    m = classification_metrics(labels, probs, EXPRESSIONS)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["classes_present"] == ["happy", "sad", "anger"]
    assert m["per_class"]["happy"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert m["per_class"]["sad"]["precision"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert m["confusion"][1][3] == 1 and m["confusion"][3][1] == 1


def test_valence_arousal_follow_russell_and_mehrabian():
    names = ("happy", "sad", "fear", "anger", "disgust", "contempt", "surprise", "neutral")
    probs = np.eye(8, dtype=np.float32)[[EXPRESSIONS.index(c) for c in names]]
    va = dict(zip(names, valence_arousal(probs, np.zeros((len(names), 20), np.float32))))
    assert va["happy"][0] > 0.7 and va["happy"][1] > 0.3          # pleasant, activated
    for negative in ("anger", "disgust", "fear", "sad", "contempt"):
        assert va[negative][0] <= -0.5, negative                  # all clearly unpleasant
    assert va["sad"][1] < -0.2 and va["fear"][1] > 0.5            # sad low arousal, fear high
    assert va["surprise"][1] > va["neutral"][1] + 0.5 and np.allclose(va["neutral"], 0)
    smiling = np.zeros((1, 20), np.float32)
    smiling[0, AU_NAMES.index("AU12")] = 1.0
    assert valence_arousal(probs[7:8], smiling)[0, 0] == pytest.approx(0.2)  # AU evidence nudges
    assert np.isnan(valence_arousal(np.full((1, 8), np.nan), smiling)).all()


def test_class_name_synonyms():
    assert canonical_expression("Angry") == "anger"
    assert canonical_expression("happiness") == "happy"
    assert canonical_expression("surprised") == "surprise"
    assert canonical_expression("misc") is None


def test_small_faces_are_rendered_at_their_own_resolution(classifier):
    """The face model reads 128 px crops but trained on faces of about 96 px (RAF-DB, AffectNet) and 48 px (FER+):
    each face is rendered at the nearer of the two and upscaled (`RENDER_RULE`). On FER+'s 48 px faces that is
    worth points (81.4 -> 85.9% on all of FER+ valid under its prior, measured); a sample shows the same sign."""
    import copy

    from mien.expression.crop import RENDER_RULE, crop_native_px, render_side
    from mien.expression.evaluate import run_eval
    from mien.datasets.expressions import read_ferplus
    from mien.face.align import unit_matrix

    assert classifier.render_rule == RENDER_RULE
    assert render_side(40, RENDER_RULE) == 48 and render_side(150, RENDER_RULE) == 96
    # A face's span in image pixels follows its scale: the same landmarks at half size span half the pixels.
    landmarks = np.random.default_rng(0).normal(0, 30, (478, 3)) + [200, 200, 0]
    assert crop_native_px(unit_matrix(landmarks / 2)) == pytest.approx(crop_native_px(unit_matrix(landmarks)) / 2, rel=1e-3)
    labelled = read_ferplus(needs_dataset("ferplus"), "valid")
    unrendered = copy.copy(classifier)
    unrendered.render_rule = None
    accuracy = {}
    for name, model in (("rendered", classifier), ("unrendered", unrendered)):
        run = run_eval(labelled.paths[:400], labelled.labels[:400], crops=True, classifier=model, progress=False)
        accuracy[name] = (run.probs.argmax(1) == run.labels).mean()
    assert accuracy["rendered"] > accuracy["unrendered"], accuracy
