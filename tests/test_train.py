"""Training code (needs the `train` extra; skipped without torch): data readers, augmentation, resume."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from mien.expression.classes import EXPRESSIONS
from mien.datasets.expressions import read_class_folders, read_ferplus

torch = pytest.importorskip("torch")


def _tiny_datasets(root, astronaut):
    """ferplus/ and affectnet8/ laid out like ../shared/datasets, from jittered astronaut crops."""
    rng = np.random.default_rng(0)
    face = astronaut[40:230, 130:320]
    fer = root / "ferplus"
    for split in ("train", "valid"):
        (fer / split).mkdir(parents=True)
        with open(fer / f"{split}_votes.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            for i in range(12):
                img = Image.fromarray(np.clip(face * rng.uniform(0.7, 1.2), 0, 255).astype(np.uint8)).convert("L")
                img.resize((48, 48)).save(fer / split / f"f{i}.png")
                votes = [0] * 10
                votes[1], votes[0] = 7, 3  # happy majority
                if i == 11:
                    votes = [0] * 8 + [9, 1]  # unknown wins: dropped
                writer.writerow([f"f{i}.png", "(0, 0, 48, 48)", *votes])
    for split in ("train", "valid"):
        for cls in ("happy", "neutral"):
            (root / "affectnet8" / split / cls).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(face).resize((96, 96)).save(root / "affectnet8" / split / cls / f"{i}.jpg")
    return root


def test_ferplus_reader_uses_votes_and_drops_unknown(tmp_path, astronaut):
    root = _tiny_datasets(tmp_path, astronaut)
    train = read_ferplus(root / "ferplus", "train")
    assert len(train) == 11
    np.testing.assert_allclose(train.targets[0], [0.3, 0.7, 0, 0, 0, 0, 0, 0])
    assert (train.labels == EXPRESSIONS.index("happy")).all()
    folders, skipped = read_class_folders(root / "affectnet8" / "train")
    assert folders.classes_present == ("neutral", "happy") and skipped == []


def test_ferplus_majority_protocol_drops_outlier_votes_and_split_faces(tmp_path):
    fer = tmp_path / "ferplus"
    fer.mkdir()
    rows = {  # neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
        "clear.png": [1, 6, 1, 1, 1, 0, 0, 0, 0, 0],  # 6 of 6 votes left after dropping single votes
        "split.png": [4, 3, 3, 0, 0, 0, 0, 0, 0, 0],  # no label over half: dropped by majority only
        "unknown-heavy.png": [5, 0, 0, 0, 0, 0, 0, 0, 5, 0],  # 5 of 10 is not over half
        "outliers.png": [0, 0, 0, 0, 4, 1, 1, 1, 1, 2],  # anger 4 of 6 once single votes go
        "nf.png": [0, 0, 0, 0, 0, 0, 0, 0, 2, 8],  # not a face: dropped by both
    }
    with open(fer / "test_votes.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([name, "(0, 0, 48, 48)", *votes] for name, votes in rows.items())
    names = lambda s: [p.name for p in s.paths]  # noqa: E731
    plurality = read_ferplus(fer, "test")
    majority = read_ferplus(fer, "test", "majority")
    assert names(plurality) == ["clear.png", "split.png", "unknown-heavy.png", "outliers.png"]
    assert names(majority) == ["clear.png", "outliers.png"] and majority.name == "ferplus-test-majority"
    assert [EXPRESSIONS[i] for i in majority.labels] == ["happy", "anger"]
    np.testing.assert_allclose(majority.targets[1], np.array([0, 0, 0, 0, 4, 1, 1, 1]) / 7, rtol=1e-6)
    with pytest.raises(ValueError, match="protocol"):
        read_ferplus(fer, "test", "mean")


def test_augment_keeps_shapes_and_mirrors_blendshapes():
    from mien.face.blendshapes import BLENDSHAPE_NAMES, mirrored_order
    from mien.train.augment import augment

    images = torch.rand(64, 1, 48, 48)
    blend = torch.zeros(64, 53)
    blend[:, BLENDSHAPE_NAMES.index("mouthSmileLeft")] = 1.0
    mirror = torch.tensor(mirrored_order() + [52])
    out, out_blend = augment(images, blend, mirror, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and 0 <= out.min() and out.max() <= 1
    swapped = out_blend[:, BLENDSHAPE_NAMES.index("mouthSmileRight")] == 1.0
    assert 10 < swapped.sum() < 54  # about half were mirrored


def test_mixup_mixes_faces_only_within_their_dataset_family():
    from mien.train.augment import mix_within_sets

    sets = torch.tensor([0, 0, 0, 1, 1, 2, 0, 1])
    # each face's image, blendshapes and target carry its family, so any cross-family mixture would show
    images = sets.float().view(-1, 1, 1, 1).expand(-1, 3, 8, 8).clone()
    blend = sets.float()[:, None].expand(-1, 53).clone()
    targets = torch.nn.functional.one_hot(torch.arange(8) % 8, 8).float()
    weights = torch.full((8,), 0.6)
    x, b, t = mix_within_sets(images, blend, targets, sets, weights, torch.Generator().manual_seed(1))
    assert torch.equal(x, images) and torch.equal(b, blend)
    np.testing.assert_allclose(t.sum(1), 1, atol=1e-6)
    assert t[5, 5] == 1  # alone in its family: mixed with itself
    for i in range(8):
        partners = torch.nonzero(t[i] > 0).flatten()
        assert all(sets[j] == sets[i] for j in partners)
        assert t[i, i] >= 0.6 - 1e-6
    assert (t.max(1).values < 1).sum() >= 4  # most faces did get a partner


def test_training_with_mixup_records_it_and_exports(tmp_path, astronaut):
    from mien.train.loop import TrainConfig, run_training

    data = _tiny_datasets(tmp_path / "data", astronaut)
    config = TrainConfig(epochs=1, batch_size=8, threads=1, mixup=0.2)
    assert run_training(config, data, tmp_path / "run", tmp_path / "cache", log=lambda *_: None) is not None
    info = json.loads((tmp_path / "run" / "training.json").read_text())
    assert info["config"]["mixup"] == 0.2 and np.isfinite(info["history"][0]["loss"])


def test_training_resumes_from_its_checkpoint(tmp_path, astronaut):
    from mien.train.loop import TrainConfig, run_training

    data = _tiny_datasets(tmp_path / "data", astronaut)
    config = TrainConfig(epochs=2, batch_size=8, threads=1)
    assert run_training(config, data, tmp_path / "run", tmp_path / "cache", log=lambda *_: None, stop_after=1) is None
    first = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["state"]
    assert first["epoch"] == 1
    logs = []
    assert run_training(config, data, tmp_path / "run", tmp_path / "cache", log=logs.append) is not None
    assert logs[0] == "resuming after epoch 1"
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["state"]
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    assert (tmp_path / "run" / "best.pt").exists() and (tmp_path / "run" / "training.json").exists()


def test_resuming_with_other_settings_is_refused(tmp_path, astronaut):
    from mien.train.loop import TrainConfig, run_training

    data = _tiny_datasets(tmp_path / "data", astronaut)
    run_training(TrainConfig(epochs=2, batch_size=8, threads=1), data, tmp_path / "run", tmp_path / "cache",
                 log=lambda *_: None, stop_after=1)
    with pytest.raises(ValueError, match="other settings"):
        run_training(TrainConfig(epochs=2, batch_size=8, threads=1, lr=1e-4), data, tmp_path / "run",
                     tmp_path / "cache", log=lambda *_: None)
    # The WiSE share only shapes the export and the thread count only the speed, so they may change between calls.
    assert run_training(TrainConfig(epochs=2, batch_size=8, threads=2, init_share=0.4), data, tmp_path / "run",
                        tmp_path / "cache", log=lambda *_: None) is not None


def test_a_run_can_be_shortened_on_resume(tmp_path, astronaut):
    from mien.train.loop import TrainConfig, run_training

    data = _tiny_datasets(tmp_path / "data", astronaut)
    run, cache = tmp_path / "run", tmp_path / "cache"
    run_training(TrainConfig(epochs=6, batch_size=8, threads=1), data, run, cache, log=lambda *_: None, stop_after=2)
    with pytest.raises(ValueError, match="already past epoch 2"):
        run_training(TrainConfig(epochs=2, batch_size=8, threads=1), data, run, cache, log=lambda *_: None)
    logs = []
    assert run_training(TrainConfig(epochs=3, batch_size=8, threads=1), data, run, cache, log=logs.append) is not None
    assert logs[0] == "resuming after epoch 2; learning-rate schedule re-planned from 6 to 3 epochs"
    saved = torch.load(run / "checkpoint.pt", weights_only=False)
    assert [h["epoch"] for h in saved["state"]["history"]] == [1, 2, 3]
    run_training(TrainConfig(epochs=3, batch_size=8, threads=1), data, tmp_path / "straight", cache,
                 log=lambda *_: None)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    # The re-planned cosine ends where a straight 3-epoch run ends, not mid-way down the 6-epoch one.
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        straight["optimizer"]["param_groups"][0]["lr"], rel=1e-6)
    info = json.loads((run / "training.json").read_text())
    assert info["schedule_replanned"] == [{"after_epoch": 2, "from": 6, "to": 3}]


def test_train_cli_rejects_unknown_sets(tmp_path):
    import os
    import subprocess
    import sys

    cases = {"nope": ["--sets", "ferplus-train,nope"], "--select takes valid sets": ["--select", "ferplus-train"],
             "--channels takes": ["--channels", "16,wide"]}
    for message, option in cases.items():
        result = subprocess.run([sys.executable, "-m", "mien", "train", "--data", str(tmp_path), "--out",
                                 str(tmp_path / "run"), *option], capture_output=True, text=True,
                                env={**os.environ, "COLUMNS": "200"})
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert not (tmp_path / "run").exists()


def test_interpolated_weights_lie_between_start_and_fine_tuned(tmp_path):
    from dataclasses import asdict

    from mien.train.export import interpolate_weights, load_trained
    from mien.train.loop import TrainConfig, build_model

    torch.manual_seed(0)
    start, tuned = build_model(asdict(TrainConfig())), build_model(asdict(TrainConfig()))
    torch.nn.init.normal_(tuned.domain_bias)
    torch.save({"model": start.state_dict()}, tmp_path / "start.pt")
    torch.save({"model": tuned.state_dict(), "config": asdict(TrainConfig()), "epoch": 3}, tmp_path / "tuned.pt")
    out = interpolate_weights(tmp_path / "tuned.pt", tmp_path / "start.pt", 0.3, tmp_path / "mixed.pt")
    model, saved = load_trained(out)
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.3 * start.state_dict()[key] + 0.7 * tuned.state_dict()[key])
    assert saved["epoch"] == 3 and saved["init_share"] == 0.3


@pytest.mark.parametrize("flip", [True, False])
def test_onnx_export_matches_torch_with_and_without_test_flip(tmp_path, flip):
    import onnxruntime as ort

    from mien.train.export import export_onnx
    from mien.train.loop import predict_logits
    from mien.train.model import ExpressionNet

    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = ExpressionNet(channels=(8, 16, 16, 32), top=64).eval()
    path = export_onnx(model, tmp_path / "m.onnx", {"temperature": 1.0}, flip=flip)
    images = torch.randint(0, 255, (5, 1, 48, 48), dtype=torch.uint8)
    blend = torch.rand(5, 53)
    expected = predict_logits(model, images, blend, flip=flip).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": images.float().numpy() / 255, "blendshapes": blend.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    if not flip:  # a plain model is not mirror-symmetric, so the two exports must differ
        other = predict_logits(model, images, blend, flip=True).numpy()
        assert np.abs(other - got).max() > 1e-4


def test_train_cli_runs_end_to_end_on_a_set_smaller_than_a_batch(tmp_path, astronaut):
    import json
    import subprocess
    import sys

    from mien.expression.classifier import ExpressionClassifier

    data = _tiny_datasets(tmp_path / "data", astronaut)  # 19 training faces, batch size 128
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
            "--cache", str(tmp_path / "cache"), "--threads", "1", "--balance", "0.5"]
    result = subprocess.run([sys.executable, "-m", "mien", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads((tmp_path / "run" / "training.json").read_text())
    assert info["command"] == " ".join(["mien", *args])
    assert info["config"]["balance_power"] == 0.5
    probs = ExpressionClassifier(tmp_path / "run" / "expression.onnx").predict(
        np.zeros((2, 48, 48), np.uint8), np.full((2, 52), np.nan, np.float32))
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    # Every training face is happy, so the balanced prior pushes happy down the most.
    shift = np.array(info["calibration"]["priors"]["balanced"]["shift"])
    assert shift.argmin() == EXPRESSIONS.index("happy") and abs(shift.mean()) < 1e-6
    balanced = ExpressionClassifier(tmp_path / "run" / "expression.onnx", prior="balanced")
    np.testing.assert_allclose(balanced._shift, shift, atol=1e-6)


def test_classifier_refuses_a_model_made_for_other_crop_framing(tmp_path):
    from mien.expression.classifier import ExpressionClassifier
    from mien.train.export import export_onnx
    from mien.train.model import ExpressionNet

    pytest.importorskip("onnx")
    import onnx

    path = export_onnx(ExpressionNet(channels=(8, 16, 16, 32), top=64), tmp_path / "m.onnx", {}, flip=False)
    ExpressionClassifier(path)  # made by this version: accepted
    proto = onnx.load(str(path))
    for entry in proto.metadata_props:
        if entry.key == "align_margin":
            entry.value = "0.2"
    onnx.save(proto, str(tmp_path / "old.onnx"))
    with pytest.raises(ValueError, match="margin 0.200"):
        ExpressionClassifier(tmp_path / "old.onnx")


def test_cache_is_rebuilt_when_crop_framing_or_the_mesh_changes(tmp_path, astronaut):
    from mien.train.cache import build_cache, crop_settings, load_cache

    data = _tiny_datasets(tmp_path / "data", astronaut)
    labelled = read_ferplus(data / "ferplus", "valid")
    path = build_cache(labelled, tmp_path / "cache.npz", workers=1)
    made = load_cache(path)
    np.testing.assert_allclose(made["crop_settings"], crop_settings())
    stale = {**made, "crop_settings": made["crop_settings"] + 0.1, "crops": np.zeros_like(made["crops"])}
    np.savez(path, **stale)
    assert load_cache(build_cache(labelled, path, workers=1))["crops"].any()  # rebuilt, not reused
    before = path.stat().st_mtime_ns
    build_cache(labelled, path, workers=1)
    assert path.stat().st_mtime_ns == before  # same framing and files: reused
    other_mesh = {**load_cache(path), "mesh_pipeline": np.array("FaceLandmarker on a 1.9x crop"),
                  "crops": np.zeros_like(made["crops"])}
    np.savez(path, **other_mesh)
    assert load_cache(build_cache(labelled, path, workers=1))["crops"].any()  # a mesh made otherwise: rebuilt


def test_domain_bias_is_per_dataset_in_training_and_fer_plus_in_the_export(tmp_path):
    import onnxruntime as ort

    from mien.train.export import export_onnx
    from mien.train.loop import DOMAINS, domain_of
    from mien.train.model import ExpressionNet

    assert domain_of("ferplus-valid") == DOMAINS.index("ferplus") == 0 and domain_of("affectnet8-train") == 1
    torch.manual_seed(0)
    model = ExpressionNet(channels=(8, 16, 16, 32), top=64, n_domains=2).eval()
    with torch.no_grad():
        model.domain_bias.copy_(torch.tensor([[2.0] + [0.0] * 7, [0.0] * 7 + [3.0]]))
    images, blend = torch.rand(3, 1, 48, 48), torch.rand(3, 53)
    with torch.no_grad():
        fer = model(images, blend, torch.zeros(3, dtype=torch.long))
        affect = model(images, blend, torch.ones(3, dtype=torch.long))
        default = model(images, blend)
    torch.testing.assert_close(affect - fer, torch.tensor([[-2.0] + [0.0] * 6 + [3.0]]).expand(3, 8))
    torch.testing.assert_close(default, fer)
    path = export_onnx(model, tmp_path / "m.onnx", {"temperature": 1.0}, flip=False)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": images.numpy(), "blendshapes": blend.numpy()})[0]
    np.testing.assert_allclose(got, fer.numpy(), atol=1e-4)


def test_precision_auto_follows_the_cpu_and_bad_values_are_refused():
    from mien.train.loop import resolve_precision

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert resolve_precision("auto") == ("bf16" if native else "fp32")
    assert resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")


def test_classifier_applies_the_chosen_class_prior(tmp_path):
    from mien.expression.classifier import ExpressionClassifier
    from mien.train.export import export_onnx
    from mien.train.model import ExpressionNet

    pytest.importorskip("onnx")
    torch.manual_seed(0)
    shift = [0.0, -1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0]
    path = export_onnx(ExpressionNet(channels=(8, 16, 16, 32), top=64), tmp_path / "m.onnx", {
        "temperature": 1.5, "priors": {"natural": {"shift": [0.0] * 8, "temperature": 1.5},
                                       "balanced": {"shift": shift, "temperature": 0.8}}}, flip=False)
    crops = np.random.default_rng(0).integers(0, 255, (4, 48, 48), dtype=np.uint8)
    blend = np.full((4, 52), 0.2, np.float32)
    natural, balanced = ExpressionClassifier(path), ExpressionClassifier(path, prior="balanced")
    np.testing.assert_allclose(balanced.logits(crops, blend) - natural.logits(crops, blend),
                               np.tile(shift, (4, 1)), atol=1e-5)
    assert (natural.temperature, balanced.temperature) == (1.5, 0.8)
    with pytest.raises(ValueError, match="no class prior 'uniform'"):
        ExpressionClassifier(path, prior="uniform")


def test_small_rendering_is_the_run_time_rendering_of_a_small_face(astronaut):
    """`small_prob` faces are exactly what the run-time crop makes of a face spanning 48 px (its detail gone), and
    faces already that small are left alone."""
    import cv2
    import torch

    from mien.expression.crop import resize_crops
    from mien.train.loop import rendered_small

    crop = np.ascontiguousarray(cv2.resize(astronaut[40:230, 130:320], (128, 128), interpolation=cv2.INTER_AREA))
    images = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    small = rendered_small(images)[0].permute(1, 2, 0).numpy() * 255
    run_time = resize_crops(crop[None], 128, render=48)[0].astype(np.float64)
    # OpenCV's resizes, which round to uint8 twice
    assert np.abs(small - run_time).max() < 1.5 and np.abs(small - run_time).mean() < 0.3
    assert np.abs(small - crop).mean() > 5  # and not the crop: its detail is gone
    tiny = torch.rand(2, 3, 48, 48)
    assert torch.equal(rendered_small(tiny), tiny) and rendered_small(tiny[:0]).shape == (0, 3, 48, 48)


def test_colour_training_with_rafdb_masks_its_missing_contempt(tmp_path, astronaut):
    """A colour model at another input size, trained on FER+ (grey), AffectNet and RAF-DB (no contempt)."""
    import json
    import subprocess
    import sys

    from mien.expression.classifier import ExpressionClassifier
    from mien.datasets.expressions import read_builtin
    from mien.train.loop import DOMAINS, absent_mask

    data = _tiny_datasets(tmp_path / "data", astronaut)
    face = astronaut[40:230, 130:320]
    for cls in ("happy", "sad"):
        (data / "rafdb" / "train" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.roll(face, i * 3, axis=1)).resize((100, 100)).save(data / "rafdb" / "train" / cls / f"r{i}.jpg")
    train, valid = read_builtin("rafdb-train", data), read_builtin("rafdb-valid", data)
    assert (len(train), len(valid)) == (18, 2) and not set(train.paths) & set(valid.paths)
    mask = absent_mask()
    contempt_only = mask[:, EXPRESSIONS.index("contempt")]
    assert contempt_only[DOMAINS.index("rafdb")] and contempt_only[DOMAINS.index("kdef")] and mask.sum() == 2
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--cache", str(tmp_path / "cache"),
            "--threads", "1", "--colour", "--input-size", "32", "--grey-prob", "0.3", "--small-prob", "0.5", "--no-test-flip",
            "--sets", "ferplus-train,affectnet8-train,rafdb-train", "--valid-sets", "ferplus-valid,rafdb-valid",
            "--label-transition", "affectnet8,rafdb"]
    result = subprocess.run([sys.executable, "-m", "mien", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads((tmp_path / "run" / "training.json").read_text())
    assert info["config"]["colour"] and info["config"]["input_size"] == 32 and info["config"]["small_prob"] == 0.5
    assert set(info["valid_accuracy"]) == {"ferplus-valid", "rafdb-valid"}
    learned = info["label_transition"]  # recorded for the model card: what each set's annotators do
    assert set(learned) == {"affectnet8", "rafdb"}
    assert all(abs(sum(row.values()) - 1) < 1e-3 for family in learned.values() for row in family.values())
    classifier = ExpressionClassifier(tmp_path / "run" / "expression.onnx")
    assert classifier.colour and classifier.input_size == 32
    crop = classifier.crop(astronaut, np.tile([[256.0, 256.0, 0.0]], (478, 1)) + np.random.default_rng(0).normal(0, 40, (478, 3)))
    assert crop.shape == (32, 32, 3)
    probs = classifier.predict(np.stack([crop, crop]), np.full((2, 52), np.nan, np.float32))
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    # A RAF-DB-trained model carries each set's learned prior; natural is the mean of FER+'s and RAF-DB's.
    priors = info["calibration"]["priors"]
    assert set(priors) == {"natural", "balanced", "ferplus", "rafdb"}
    assert priors["natural"]["fitted_on"] == ["ferplus-valid", "rafdb-valid"] and priors["rafdb"]["fitted_on"] == ["rafdb-valid"]
    contempt = EXPRESSIONS.index("contempt")
    rafdb, natural = np.array(priors["rafdb"]["shift"]), np.array(priors["natural"]["shift"])
    assert rafdb[contempt] < -5 and natural[contempt] == 0 and np.allclose(np.delete(natural, contempt), np.delete(rafdb, contempt) / 2)
    on_rafdb = ExpressionClassifier(tmp_path / "run" / "expression.onnx", prior="rafdb")
    assert on_rafdb.predict(np.stack([crop]), np.full((1, 52), np.nan, np.float32))[0, contempt] < probs[0, contempt]


def test_onnx_backbone_reproduces_the_shipped_face_network_and_trains():
    """dlib's age network (shipped) as a torch backbone: the same pooled features as onnxruntime, and an
    expression model built on it takes a gradient step."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from mien.models import resolve
    from mien.train.loop import TrainConfig, build_model
    from mien.train.onnx_backbone import OnnxBackbone
    from dataclasses import asdict

    path = resolve("age")
    images = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ours = OnnxBackbone(path).eval()(torch.from_numpy(images)).numpy()
    graph = onnx.load(str(path))
    pooled = next(n for n in graph.graph.node if n.op_type == "GlobalAveragePool").output[0]
    graph.graph.output.append(helper.make_tensor_value_info(pooled, onnx.TensorProto.FLOAT, None))
    reference = ort.InferenceSession(graph.SerializeToString()).run([pooled], {"images": images})[0].reshape(2, -1)
    np.testing.assert_allclose(ours, reference, atol=1e-4 * np.abs(reference).max())

    model = build_model(asdict(TrainConfig(colour=True, input_size=64, backbone="age")))
    before = model.backbone.layers["n0"].weight.detach().clone()
    loss = model(torch.rand(4, 3, 64, 64), torch.rand(4, 53)).logsumexp(1).mean()
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(before, model.backbone.layers["n0"].weight)


def test_a_checkpoint_from_before_a_new_setting_still_resumes():
    from dataclasses import asdict

    from mien.train.loop import TrainConfig, _training_settings

    old = asdict(TrainConfig(colour=True, input_size=64))
    old.pop("backbone")  # written before --backbone existed
    assert _training_settings(old) == _training_settings(asdict(TrainConfig(colour=True, input_size=64)))
    assert _training_settings(old) != _training_settings(asdict(TrainConfig(colour=True, input_size=64, backbone="age")))


def test_a_student_learns_from_a_teacher_run(tmp_path, astronaut):
    from mien.train.loop import TeacherEnsemble, TrainConfig, _distillation_loss, _load_teacher, run_training

    data = _tiny_datasets(tmp_path / "data", astronaut)
    teacher_best = run_training(TrainConfig(epochs=1, batch_size=8, threads=1), data, tmp_path / "teacher",
                                tmp_path / "cache", log=lambda *_: None)
    student = TrainConfig(epochs=1, batch_size=8, threads=1, teacher=str(teacher_best), distill=0.7)
    assert run_training(student, data, tmp_path / "student", tmp_path / "cache", log=lambda *_: None).exists()
    teacher = _load_teacher(str(teacher_best), student)
    x, b = torch.rand(4, 1, 48, 48), torch.rand(4, 53)
    absent = torch.zeros(4, 8, dtype=torch.bool)
    with torch.no_grad():
        own = teacher(x, b, torch.zeros(4, dtype=torch.long)).float()
    t = student.distill_temperature
    same = _distillation_loss(own, teacher, x, b, torch.zeros(4, dtype=torch.long), absent, t)
    other = _distillation_loss(-own, teacher, x, b, torch.zeros(4, dtype=torch.long), absent, t)
    assert float(same) < 1e-3 < float(other)  # zero when the student says what the teacher says
    with pytest.raises(ValueError, match="other crops"):
        _load_teacher(str(teacher_best), TrainConfig(colour=True, input_size=64))

    # Two runs teach as one: the mean of their logits, and a student learns from the pair.
    second_best = run_training(TrainConfig(epochs=1, batch_size=8, threads=1, seed=1), data, tmp_path / "second",
                               tmp_path / "cache", log=lambda *_: None)
    pair = _load_teacher(f"{teacher_best},{second_best}", student)
    second = _load_teacher(str(second_best), student)
    domains = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        both = pair(x, b, domains)
        assert torch.allclose(both, (own + second(x, b, domains).float()) / 2, atol=1e-5)
        assert not torch.allclose(both, own, atol=1e-3)  # the second run's answers count
    assert float(_distillation_loss(both, pair, x, b, domains, absent, t)) < 1e-3

    class Plain(torch.nn.Module):  # a member without per-set priors: it never sees the training sets
        def forward(self, x, b, seen=None):
            assert seen is None
            return torch.zeros(len(x), 8)

    mixed = TeacherEnsemble([teacher, Plain()])
    with torch.no_grad():  # the member with per-set priors gets the faces' sets, as it would alone
        assert hasattr(mixed, "domain_bias")
        assert torch.allclose(mixed(x, b, domains + 1), teacher(x, b, domains + 1).float() / 2, atol=1e-5)
    pupil = TrainConfig(epochs=1, batch_size=8, threads=1, teacher=f"{teacher_best},{second_best}")
    assert run_training(pupil, data, tmp_path / "pupil", tmp_path / "cache", log=lambda *_: None).exists()


def test_the_shipped_face_network_loads_for_fine_tuning_with_its_own_logits():
    """`mien train --backbone face --init expression_float.onnx`: the shipped float network's weights (float16
    storage) come back into the torch face network, which then computes the file's logits; RAF-DB's prior is
    carried into its training bias, and a file of another shape is refused by name."""
    from dataclasses import asdict

    import onnx
    import onnxruntime as ort

    from mien.expression.classifier import blend_input
    from mien.models import resolve
    from mien.train.loop import DOMAINS, TrainConfig, build_model, crops_tensor
    from mien.train.reference import reference_inputs
    from mien.train.unfold import unfold_into

    path = resolve("expression_float")
    crops, blends = reference_inputs(size=128, colour=True)
    images, blend = crops_tensor(crops, 128), torch.from_numpy(blend_input(blends))
    settings = asdict(TrainConfig(colour=True, input_size=128, backbone="face"))
    model = build_model(settings)
    targets = torch.full((len(images), 8), 1 / 8)
    unfold_into(model, path, images, blend, targets, torch.zeros(len(images), dtype=torch.long), DOMAINS)
    expected = ort.InferenceSession(str(path)).run(["logits"], {"image": images.numpy().astype(np.float32) / 255,
                                                                 "blendshapes": blend.numpy()})[0]
    with torch.no_grad():
        ours = model.eval()(images.float() / 255, blend).numpy()
    np.testing.assert_allclose(ours, expected, atol=2e-3)
    assert np.array_equal(ours.argmax(1), expected.argmax(1))
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    rafdb = (model.domain_bias[DOMAINS.index("rafdb")] - model.domain_bias[0]).detach().numpy()
    np.testing.assert_allclose(rafdb[:7], meta["priors"]["rafdb"]["shift"][:7], atol=1e-6)
    with pytest.raises(ValueError, match="does not fit"):
        unfold_into(build_model(asdict(TrainConfig(colour=True, input_size=128, backbone="face", use_blendshapes=False))),
                    path, images, blend, targets, torch.zeros(len(images), dtype=torch.long), DOMAINS)


def test_the_shipped_float_network_teaches_with_its_own_logits(tmp_path, astronaut):
    """`mien train --teacher expression_float.onnx`: the shipped model teaches without the run that made it; for a
    FER+ face it says what the file says, a student of another crop size is refused, and a run with it trains."""
    import onnxruntime as ort

    from mien.expression.classifier import blend_input
    from mien.models import resolve
    from mien.train.loop import TrainConfig, _load_teacher, crops_tensor, run_training
    from mien.train.reference import reference_inputs

    path = resolve("expression_float")
    crops, blends = reference_inputs(size=128, colour=True)
    images, blend = crops_tensor(crops, 128), torch.from_numpy(blend_input(blends))
    domains = torch.zeros(len(images), dtype=torch.long)
    training = (images, blend, torch.full((len(images), 8), 1 / 8), domains)
    student = TrainConfig(colour=True, input_size=128, backbone="face", teacher=str(path))
    teacher = _load_teacher(str(path), student, training)
    expected = ort.InferenceSession(str(path)).run(["logits"], {"image": images.numpy().astype(np.float32) / 255,
                                                                 "blendshapes": blend.numpy()})[0]
    with torch.no_grad():
        said = teacher(images.float().contiguous(memory_format=torch.channels_last) / 255, blend, domains).numpy()
    np.testing.assert_allclose(said, expected, atol=2e-3)
    assert not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match="other crops"):
        _load_teacher(str(path), TrainConfig(colour=True, input_size=64, backbone="face"), training)
    with pytest.raises(ValueError, match="training faces"):
        _load_teacher(str(path), student)
    student = TrainConfig(colour=True, input_size=128, backbone="face", teacher=str(path), epochs=1, batch_size=8,
                          threads=1, precision="fp32")
    data = _tiny_datasets(tmp_path / "data", astronaut)
    assert run_training(student, data, tmp_path / "student", tmp_path / "cache", log=lambda *_: None).exists()


def test_a_flip_averaging_face_export_unfolds_with_its_own_logits(tmp_path):
    """`mien train --backbone face` exports face-and-mirror averaging unless --no-test-flip; such a file (parameters
    wrapped as `net.*`, FER+'s bias inside the wrapper) is a valid `--init`: it failed with "does not fit"."""
    from dataclasses import asdict

    import onnxruntime as ort

    from mien.expression.classifier import blend_input
    from mien.train.export import export_onnx
    from mien.train.loop import DOMAINS, TrainConfig, build_model, crops_tensor, predict_logits
    from mien.train.reference import reference_inputs
    from mien.train.unfold import unfold_into

    settings = asdict(TrainConfig(colour=True, input_size=128, backbone="face"))
    trained = build_model(settings).eval()
    with torch.no_grad():
        trained.domain_bias.copy_(torch.randn_like(trained.domain_bias) * 0.5)
    rafdb = (trained.domain_bias[DOMAINS.index("rafdb")] - trained.domain_bias[0]).detach()
    priors = {"rafdb": {"shift": rafdb.tolist(), "temperature": 1.0}}
    path = export_onnx(trained, tmp_path / "flip.onnx", {"temperature": 1.0, "priors": priors}, flip=True, size=128,
                       colour=True)
    crops, blends = reference_inputs(size=128, colour=True)
    images, blend = crops_tensor(crops, 128), torch.from_numpy(blend_input(blends))
    model = build_model(settings, pretrained=False)
    unfold_into(model, path, images, blend, torch.full((len(images), 8), 1 / 8),
                torch.zeros(len(images), dtype=torch.long), DOMAINS)
    expected = ort.InferenceSession(str(path)).run(["logits"], {"image": images.numpy().astype(np.float32) / 255,
                                                                 "blendshapes": blend.numpy()})[0]
    np.testing.assert_allclose(predict_logits(model.eval(), images, blend, flip=True).numpy(), expected, atol=1e-4)
    for family in ("ferplus", "rafdb"):
        k = DOMAINS.index(family)
        np.testing.assert_allclose(model.domain_bias[k].detach().numpy(), trained.domain_bias[k].detach().numpy(),
                                   atol=1e-5)


def test_a_float_onnx_unfolds_into_a_trainable_network_with_the_same_logits(tmp_path):
    """`mien train --init expression.onnx` (a float ExpressionNet export): the unfolded torch network computes the
    file's logits in eval mode, its batch norms carry real statistics (train mode stays close), an int8 file is
    refused. (The shipped model is now the face ResNet, so an exported ExpressionNet stands in for the file.)"""
    from dataclasses import asdict

    import onnxruntime as ort

    from mien.expression.classifier import blend_input
    from mien.models import resolve
    from mien.train.loop import DOMAINS, TrainConfig, build_model, crops_tensor
    from mien.train.reference import reference_inputs
    from mien.train.unfold import unfold_into

    from mien.train.export import export_onnx

    crops, blends = reference_inputs(size=64, colour=True)
    images, blend = crops_tensor(crops, 64), torch.from_numpy(blend_input(blends))
    settings = asdict(TrainConfig(channels=(8, 16, 16, 32), top=64, colour=True, input_size=64))
    exported = build_model(settings)
    with torch.no_grad():  # batch norms with the statistics of real faces, as a trained network has
        for m in exported.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 1.0
        exported.train()(images.float() / 255, blend)
    priors = {"natural": {"shift": [0.0] * 8, "temperature": 1.0}, "rafdb": {"shift": [0.0] * 8, "temperature": 1.0}}
    path = export_onnx(exported.eval(), tmp_path / "float.onnx", {"priors": priors}, flip=False, size=64, colour=True)
    targets = torch.full((len(images), 8), 1 / 8)
    model = build_model(settings)
    unfold_into(model, path, images, blend, targets, torch.zeros(len(images), dtype=torch.long), DOMAINS)
    expected = ort.InferenceSession(str(path)).run(None, {"image": images.numpy().astype(np.float32) / 255,
                                                           "blendshapes": blend.numpy()})[0]
    with torch.no_grad():
        ours = model(images.float() / 255, blend).numpy()
        norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        assert norm.running_var.min() > 1e-3 and not torch.allclose(norm.running_mean, torch.zeros(1))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.train()  # batch statistics of these same faces: what the measured ones are
        batch_stats = model(images.float() / 255, blend).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    np.testing.assert_allclose(batch_stats, expected, atol=1e-3)
    assert torch.allclose(model.domain_bias[DOMAINS.index("affectnet8")], model.domain_bias[0])  # no faces to fit it
    with pytest.raises(ValueError, match="int8"):
        unfold_into(model, resolve("expression"), images, blend, targets, torch.zeros(len(images), dtype=torch.long), DOMAINS)
    with pytest.raises(ValueError, match="do not fit"):
        small = build_model(asdict(TrainConfig(colour=True, input_size=64)))
        unfold_into(small, path, images, blend, targets, torch.zeros(len(images), dtype=torch.long), DOMAINS)


def test_label_transition_starts_near_the_identity_and_learns_what_annotators_do():
    """Each family's labels come from the network's classes through its own matrix: near the identity at first,
    exactly the identity for families without one, no mass on labels a family never uses; and fitted to a set
    whose annotators call 30% of happy faces contempt, it learns that, so the network need not."""
    from mien.train.loop import DOMAINS, LabelTransition, absent_mask

    transition = LabelTransition(("affectnet8", "rafdb"))
    logits = torch.randn(6, len(EXPRESSIONS)) * 3
    domains = torch.tensor([0, 1, 2, 0, 1, 2])
    absent = absent_mask()[domains]
    masked = logits.masked_fill(absent, -1e4)
    observed = transition.log_label_probabilities(masked, domains, absent)
    plain = torch.log_softmax(masked, 1)
    ferplus = domains == DOMAINS.index("ferplus")
    torch.testing.assert_close(observed[ferplus], plain[ferplus])
    assert (observed.exp() - plain.exp()).abs().max() < 0.03
    torch.testing.assert_close(observed.exp().sum(1), torch.ones(6))
    contempt = EXPRESSIONS.index("contempt")
    assert (observed[domains == DOMAINS.index("rafdb"), contempt] < -20).all()
    with pytest.raises(ValueError, match="unknown dataset families"):
        LabelTransition(("jaffe",))

    happy = torch.full((400, len(EXPRESSIONS)), -6.0)
    happy[:, EXPRESSIONS.index("happy")] = 6.0  # a network sure these faces are happy
    targets = torch.zeros_like(happy)
    targets[:120, contempt] = 1  # 30% labelled contempt by AffectNet's annotators
    targets[120:, EXPRESSIONS.index("happy")] = 1
    affectnet = torch.full((400,), DOMAINS.index("affectnet8"))
    optimizer = torch.optim.Adam(transition.parameters(), lr=0.05)
    for _ in range(300):
        loss = -(targets * transition.log_label_probabilities(happy, affectnet, absent_mask()[affectnet])).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    learned = transition.matrices()[DOMAINS.index("affectnet8"), EXPRESSIONS.index("happy")]
    assert abs(float(learned[contempt]) - 0.3) < 0.03 and abs(float(learned[EXPRESSIONS.index("happy")]) - 0.7) < 0.03


def test_a_fine_tune_records_the_file_it_started_from(tmp_path, astronaut):
    """training.json names the weights a fine-tune started from by SHA-256 (the shipped file it came from is
    replaced when the fine-tune ships), so a chain of runs can be followed and reproduced."""
    import hashlib

    from mien.train.loop import TrainConfig, run_training

    data = _tiny_datasets(tmp_path / "data", astronaut)
    first = run_training(TrainConfig(epochs=1, batch_size=8, threads=1), data, tmp_path / "first", tmp_path / "cache",
                         log=lambda *_: None)
    assert "init_sha256" not in json.loads((tmp_path / "first" / "training.json").read_text())
    run_training(TrainConfig(epochs=1, batch_size=8, threads=1, init_from=str(first)), data, tmp_path / "tuned",
                 tmp_path / "cache", log=lambda *_: None)
    info = json.loads((tmp_path / "tuned" / "training.json").read_text())
    assert info["init_sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()


def _tiny_kdef(root, astronaut, people=("F01", "F02", "M01", "M02")):
    """kdef/ laid out like the shared KDEF (views of class folders, KDEF file names), from astronaut crops."""
    face = astronaut[40:230, 130:320]
    codes = {"neutral": "NE", "happy": "HA", "sad": "SA"}
    for view in ("S", "HL", "HR"):
        for cls, code in codes.items():
            (root / "kdef" / view / cls).mkdir(parents=True)
            for i, person in enumerate(people):
                image = Image.fromarray(np.roll(face, 5 * i, axis=1)).resize((140, 190))
                image.save(root / "kdef" / view / cls / f"A{person}{code}{view}.jpg")
    return root


def test_kdef_folds_split_people_and_oversampled_kdef_trains_with_its_own_prior(tmp_path, astronaut):
    """KDEF's person-level folds share no person and together are kdef-train; training on a fold gives KDEF a
    fourth class-prior bias and draws its faces as often as asked, and the export ships only FER+'s prior."""
    import subprocess
    import sys

    from mien.datasets.expressions import kdef_person, read_builtin

    data = _tiny_kdef(_tiny_datasets(tmp_path / "data", astronaut), astronaut)
    whole, fold0, fold1 = (read_builtin(name, data) for name in ("kdef-train", "kdef-fold0", "kdef-fold1"))
    people0, people1 = ({kdef_person(p) for p in s.paths} for s in (fold0, fold1))
    assert people0 == {"F01", "M01"} and people1 == {"F02", "M02"}
    assert sorted(fold0.paths + fold1.paths) == sorted(whole.paths) and len(whole) == 36
    assert whole.classes_present == ("neutral", "happy", "sad")
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", "--cache",
            str(tmp_path / "cache"), "--threads", "1", "--colour", "--input-size", "32", "--no-test-flip",
            "--sets", "ferplus-train,kdef-fold0", "--valid-sets", "ferplus-valid", "--oversample", "kdef=5"]
    result = subprocess.run([sys.executable, "-m", "mien", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads((tmp_path / "run" / "training.json").read_text())
    assert info["config"]["n_domains"] == 4 and info["config"]["oversample"] == {"kdef": 5.0}
    checkpoint = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    assert checkpoint["model"]["domain_bias"].shape == (4, len(EXPRESSIONS))


def test_sampling_weights_follow_oversample():
    """A family's faces are drawn FACTOR times as often as the class balance alone would draw them."""
    from mien.train.loop import oversampled_weights

    targets = torch.eye(8)[torch.tensor([0, 0, 1, 1])]
    domains = torch.tensor([0, 3, 0, 3])
    plain = oversampled_weights(targets, domains, 0.3, {})
    boosted = oversampled_weights(targets, domains, 0.3, {"kdef": 10.0})
    torch.testing.assert_close(boosted / plain, torch.tensor([1.0, 10.0, 1.0, 10.0]))


@pytest.mark.parametrize("value, message", [("nope=2", "--oversample"), ("kdef=x", "--oversample"),
                                            ("kdef=0", "--oversample")])
def test_train_cli_rejects_bad_oversampling(tmp_path, value, message):
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "mien", "train", "--data", str(tmp_path), "--out",
                             str(tmp_path / "run"), "--oversample", value], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 2 and message in result.stderr and not (tmp_path / "run").exists()


def test_the_shared_kdef_folds_are_the_calibration_benchmarks_folds():
    """17 posers each, 21 photos per person (7 expressions x 3 views), as benchmarks/neutral_kdef.py splits them."""
    from pathlib import Path

    from mien.datasets.expressions import kdef_person, read_builtin

    data = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    if not (data / "kdef").is_dir():
        pytest.skip("the shared KDEF is not here")
    folds = [read_builtin(f"kdef-fold{k}", data) for k in (0, 1)]
    people = [sorted({kdef_person(p) for p in fold.paths}) for fold in folds]
    assert [len(p) for p in people] == [17, 17] and not set(people[0]) & set(people[1])
    assert [len(fold) for fold in folds] == [357, 357] and people[0] == sorted(people[0] + people[1])[0::2]
