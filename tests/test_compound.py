"""The default `compound` reading: one of RAF-CE's 14 compound expressions for emotional faces."""

import numpy as np
import pandas as pd
import pytest

import mien
from conftest import needs_dataset
from mien.expression import compound
from mien.expression.aus import AU_NAMES
from mien.expression.classes import COMPOUNDS, EXPRESSIONS


def test_the_shipped_model_names_mien_s_compounds_and_reads_probabilities():
    names, params = compound.load_model()
    assert names == COMPOUNDS and params["weights"].shape == (len(EXPRESSIONS) + 20, len(COMPOUNDS))
    logits = np.zeros((3, len(EXPRESSIONS)), np.float32)
    logits[:, EXPRESSIONS.index("happy")] = 4.0
    logits[:, EXPRESSIONS.index("surprise")] = 3.5
    expression = np.full((3, len(EXPRESSIONS)), 0.05, np.float32)
    expression[:, EXPRESSIONS.index("happy")] = 0.6
    expression[2] = np.nan  # no reading
    au_prob = np.full((3, 20), 0.05, np.float32)
    for au in ("AU01", "AU02", "AU05", "AU06", "AU12", "AU25", "AU26"):  # Du et al.'s happily surprised, and more
        au_prob[:, AU_NAMES.index(au)] = 0.8
    au_prob[1, AU_NAMES.index("AU45")] = 0.9  # constant on RAF-CE's photos: a blink must not swamp the reading
    read = compound.read(logits, au_prob, expression)
    assert np.allclose(read[:2].sum(1), 1.0, atol=1e-5) and np.isnan(read[2]).all()
    assert COMPOUNDS[int(read[0].argmax())] == COMPOUNDS[int(read[1].argmax())] == "happily surprised"
    assert abs(read[0].max() - read[1].max()) < 0.05


def test_a_neutral_face_has_no_compound_and_a_photo_without_faces_has_the_columns(tmp_path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 200), (128, 128, 128)).save(blank)
    root = needs_dataset("kdef")
    neutral = sorted((root / "S" / "neutral").glob("*.jpg"))[:3]
    table = mien.analyze([blank, *neutral], progress=False)
    assert list(table.columns[table.columns.get_loc("arousal") + 1:][:2]) == ["compound", "compound_confidence"]
    assert table.iloc[0]["compound"] is None or pd.isna(table.iloc[0]["compound"])
    read_neutral = table[table.expression == "neutral"]
    assert len(read_neutral) and read_neutral["compound"].isna().all() and read_neutral["compound_confidence"].isna().all()


def test_compound_faces_read_their_coded_compound_often():
    """RAF-CE valid (held out from the fit): the first 120 faces; the whole split is in benchmarks/RESULTS.md."""
    root = needs_dataset("rafce") / "valid"
    labels = pd.read_csv(root / "labels.csv").head(120)
    table = mien.analyze([root / "images" / f for f in labels.file], progress=False)
    table = table[table.face_found].drop_duplicates("source")
    coded = dict(zip(labels.file, labels.compound))
    truth = table.source.map(lambda s: coded[s.rsplit("/", 1)[-1]])
    read = table["compound"]
    assert read.notna().mean() > 0.8  # compound faces rarely read neutral
    assert set(read.dropna()) <= set(COMPOUNDS)
    assert (read == truth).mean() > 0.35, (read == truth).mean()  # majority class alone: 0.21
    assert table["compound_confidence"].dropna().between(1 / len(COMPOUNDS), 1).all()
