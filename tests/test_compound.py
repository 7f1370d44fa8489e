"""The default `compound` reading: one of RAF-CE's 14 compound expressions for faces that show one."""

import numpy as np
import pandas as pd

import mien
from conftest import needs_dataset
from mien.expression import compound
from mien.expression.aus import AU_NAMES
from mien.expression.classes import COMPOUNDS, EXPRESSIONS


def test_the_shipped_model_names_mien_s_compounds_and_reads_probabilities():
    names, params, gate = compound.load_model()
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
    assert np.isnan(read[2]).all() and ((read[:2].sum(1) > 0) & (read[:2].sum(1) < 1)).all()
    assert COMPOUNDS[int(read[0].argmax())] == COMPOUNDS[int(read[1].argmax())] == "happily surprised"
    assert abs(read[0].max() - read[1].max()) < 0.075  # same compound first; the blink moves it by 0.06 (refit of 12-06)
    # Where compounds are assumed as common as basic expressions, each face more likely shows one; same ranking.
    balanced = compound.read(logits, au_prob, expression, compound.compound_share("balanced"))
    assert (balanced[:2].sum(1) > read[:2].sum(1)).all() and (balanced[:2].argmax(1) == read[:2].argmax(1)).all()
    names, confidence = compound.named(np.concatenate([read, balanced]))
    shown = np.concatenate([read, balanced]).sum(1) >= 0.5
    assert [n is not None for n in names] == shown.tolist()
    assert np.allclose(confidence[shown], np.concatenate([read, balanced]).max(1)[shown])
    assert np.isnan(confidence[~shown]).all()


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


def _compounds_read(paths):
    """(Faces.compound row, compound column) of each photo's main face (NaN, None without one)."""
    from mien.io.images import load_image

    joint = np.full((len(paths), len(COMPOUNDS)), np.nan, np.float32)
    with mien.Analyzer() as analyzer:
        for i, path in enumerate(paths):
            faces = analyzer.analyze(load_image(path).rgb)
            if faces.main_face() is not None:
                joint[i] = faces.compound[faces.main_face()]
    return joint, compound.named(joint)[0]


def test_compound_faces_read_their_coded_compound_often():
    """RAF-CE valid (held out from the fit): the first 120 faces; the whole split is in benchmarks/RESULTS.md."""
    root = needs_dataset("rafce") / "valid"
    labels = pd.read_csv(root / "labels.csv").head(120)
    joint, names = _compounds_read([root / "images" / f for f in labels.file])
    reading = ~np.isnan(joint).any(1)
    assert reading.mean() > 0.8  # compound faces rarely read neutral (or go unseen)
    top = np.array([COMPOUNDS[k] for k in np.nan_to_num(joint, nan=-1).argmax(1)])
    assert ((top == labels.compound.to_numpy()) & reading).mean() > 0.35  # the ranking; majority class: 0.21
    named = np.array([n is not None for n in names])
    assert 0.3 < named.mean() < 0.8, named.mean()  # held-out RAF-CE valid: 0.46 named at the default share


def test_plain_smiles_are_not_named_compounds():
    """RAF-DB test's happy faces (basic, never seen by the fit): a smile alone is no compound."""
    root = needs_dataset("rafdb") / "test" / "happy"
    joint, names = _compounds_read(sorted(root.glob("*.jpg"))[:60])
    named = np.array([n is not None for n in names])
    assert (~np.isnan(joint).any(1)).mean() > 0.8 and named.mean() < 0.1, named.mean()
