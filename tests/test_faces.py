"""`Faces` as a container: validated fields, indexing with masks and index arrays, concat, empty."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mien.faces import N_LANDMARKS, Faces


def _faces(n: int = 3) -> Faces:
    rng = np.random.default_rng(0)
    boxes = np.array([[10 * i, 5, 10 * i + 40, 50] for i in range(n)], np.float32)
    faces = Faces(boxes=boxes, scores=np.linspace(0.9, 0.7, n), image_size=(120, 200), source="x.jpg",
                  landmarks=rng.uniform(0, 100, (n, N_LANDMARKS, 3)).astype(np.float32),
                  track_ids=np.arange(n) + 7)
    faces.aus[:] = rng.uniform(0, 1, faces.aus.shape)
    faces.smoothed["pose"] = rng.normal(size=(n, 3)).astype(np.float32)
    return faces


def test_fields_are_validated_by_shape():
    with pytest.raises(ValueError, match=r"Faces.landmarks has shape \(2, 468, 3\), expected \(2, 478, 3\)"):
        Faces(boxes=np.zeros((2, 4)), scores=np.zeros(2), image_size=(10, 10), landmarks=np.zeros((2, 468, 3)))
    with pytest.raises(ValueError, match="Faces.aus"):
        Faces(boxes=np.zeros((1, 4)), scores=np.zeros(1), image_size=(10, 10), aus=np.zeros((1, 19)))
    with pytest.raises(ValueError, match="smoothed"):
        Faces(boxes=np.zeros((1, 4)), scores=np.zeros(1), image_size=(10, 10), smoothed={"pose": np.zeros((2, 3))})


def test_indexing_with_masks_indices_slices_and_ints():
    faces = _faces()
    by_mask = faces[np.array([True, False, True])]
    by_index = faces[[0, 2]]
    assert len(by_mask) == 2 and np.array_equal(by_mask.track_ids, [7, 9])
    for name in ("boxes", "landmarks", "aus", "track_ids", "scores"):
        assert np.array_equal(getattr(by_mask, name), getattr(by_index, name))
    assert np.array_equal(by_mask.smoothed["pose"], faces.smoothed["pose"][[0, 2]])
    assert len(faces[1]) == 1 and faces[1].track_ids.tolist() == [8]  # an int keeps a Faces
    assert len(faces[1:]) == 2 and len(faces[np.zeros(3, bool)]) == 0
    assert (by_mask.source, by_mask.image_size) == ("x.jpg", (120, 200))
    with pytest.raises(IndexError):
        faces[np.array([True, False])]


def test_concat_round_trips_and_empty():
    faces = _faces()
    joined = Faces.concat([faces[[0]], faces[[1, 2]]])
    pd.testing.assert_frame_equal(joined.to_pandas(), faces.to_pandas())
    assert np.array_equal(joined.smoothed["pose"], faces.smoothed["pose"])
    empty = Faces.empty((120, 200), source="none.jpg")
    assert len(empty) == 0 and empty.to_pandas()["face_found"].tolist() == [False]
    with pytest.raises(ValueError, match="one image"):
        Faces.concat([faces, Faces.empty((120, 200), source="other.jpg")])


def test_pipeline_subsets_through_the_container(analyzer, astronaut):
    from conftest import collage

    faces = analyzer.analyze(collage(astronaut, 1, 2, 260))
    assert len(faces) == 2
    first = faces[faces.scores >= faces.scores.max()]
    row, expected = first.to_pandas().iloc[0], faces.to_pandas().iloc[int(faces.scores.argmax())]
    pd.testing.assert_series_equal(row.drop("face_id"), expected.drop("face_id"), check_names=False)
    assert faces.sharpness.shape == (len(faces),) and np.isfinite(faces.sharpness).all()
