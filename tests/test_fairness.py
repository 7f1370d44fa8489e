"""Attributes, the disaggregated (fairness) evaluation and the model cards."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import needs_dataset
from mien.fairness import age_band, group_metrics, holm, largest_gaps
from mien.datasets.utkface import parse_name, split_of


def test_group_parser():
    label = parse_name("26_1_3_20170104235421282.jpg.chip.jpg")
    assert (label.age, label.gender, label.race) == (26, "female", "Indian")
    assert parse_name("/data/utk/70_0_0_2017.jpg").gender == "male"
    for bad in ("26_1_20170104.jpg", "x_1_3_2017.jpg", "26_2_3_2017.jpg", "26_1_9_2017.jpg", "photo.jpg"):
        assert parse_name(bad) is None
    assert [age_band(a) for a in (0, 2.9, 3, 19, 20, 69.5, 70, 101)] == \
        ["0-2", "0-2", "3-9", "10-19", "20-29", "60-69", "70+", "70+"]
    assert age_band(float("nan")) is None and age_band(-1) is None
    splits = pd.Series([split_of(f"{i}_0_0_x.jpg") for i in range(3000)]).value_counts(normalize=True)
    assert abs(splits["train"] - 0.70) < 0.03 and abs(splits["test"] - 0.15) < 0.03
    assert split_of("a/b/26_1_3_x.jpg") == split_of("26_1_3_x.jpg")  # by file name only


def test_holm_known_answer():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def _fixture() -> pd.DataFrame:
    """80 faces in two race groups with known detection, mesh, age and gender outcomes."""
    rows = []
    for k in range(80):
        group = "A" if k < 40 else "B"
        detected = not (group == "B" and k % 4 == 0)          # B: 10 of 40 missed
        meshed = detected and not (group == "A" and k == 0)  # A: one detection without mesh
        rows.append({
            "age": 30, "gender": "female" if k % 2 else "male", "race": group, "age_band": "30-39",
            "detected": detected, "meshed": meshed, "attribute_eval": True,
            "apparent_age": 32.0 if group == "A" else 40.0,     # errors: A +2, B +10
            "apparent_age_low": 25.0 if group == "A" else 36.0, "apparent_age_high": 35.0 if group == "A" else 44.0,
            "p_female": (0.9 if k % 2 else 0.1) if group == "A" else 0.9,  # B: all read as female
            "expression": ("happy" if group == "A" else "neutral") if meshed else None,
            "expression_status": "known" if meshed else None,
        })
    return pd.DataFrame(rows)


def test_group_metrics_on_a_fixture_with_known_answers():
    table = _fixture()
    frame = group_metrics(table, "race").set_index("group")
    assert frame.loc["A", "detection_rate"] == 1.0 and frame.loc["B", "detection_rate"] == 0.75
    assert frame.loc["A", "mesh_rate"] == 0.975 and frame.loc["A", "mesh_given_detection"] == 0.975
    assert frame.loc["A", "attribute_faces"] == 39 and frame.loc["B", "attribute_faces"] == 30
    assert frame.loc["A", "age_mae"] == pytest.approx(2.0) and frame.loc["B", "age_bias"] == pytest.approx(10.0)
    assert frame.loc["A", "age_interval_coverage"] == 1.0 and frame.loc["B", "age_interval_coverage"] == 0.0
    assert frame.loc["A", "gender_accuracy"] == 1.0
    assert frame.loc["B", "gender_accuracy"] == pytest.approx(20 / 30)  # only the women are read right
    assert frame.loc["A", "share_happy"] == 1.0 and frame.loc["B", "share_neutral"] == 1.0
    assert frame.loc["A", "expression_shift_p_holm"] < 1e-6 and frame.loc["A", "expression_shift_cramers_v"] > 0.9
    gaps = {(g["grouping"], g["measure"]): g for g in largest_gaps({"race": frame.reset_index()})}
    gap = gaps[("race", "age_mae")]
    assert (gap["best_group"], gap["worst_group"], gap["gap"]) == ("A", "B", pytest.approx(8.0))
    assert gaps[("race", "detection_rate")]["worst_group"] == "B"


def test_small_groups_are_left_out_of_the_gaps():
    frame = group_metrics(_fixture().head(50), "race")  # B keeps only 10 faces
    assert largest_gaps({"race": frame}) == []


def test_cards_render_from_json(tmp_path):
    from mien.report.card import CARDS, _fairness_lines, card_data, render_card

    for name in CARDS:
        text = render_card(name)
        assert text.startswith("# Model card") and "## Out of scope" in text and "## Per group" in text
    data = card_data("age")
    data["fairness"] = {"command": "mien fairness --write-cards", "dataset": "a fixture", "min_group": 30,
                        "columns": {"attribute_faces": "faces", "age_mae": "MAE (years)", "age_bias": "mean error (years)"},
                        "groups": {"race": [{"group": "A", "attribute_faces": 19, "age_mae": 2.0, "age_bias": 2.0},
                                            {"group": "B", "attribute_faces": 15, "age_mae": 10.0, "age_bias": 10.0}]},
                        "gaps": [{"grouping": "race", "measure": "age_mae", "best_group": "A", "best": 2.0,
                                  "worst_group": "B", "worst": 10.0, "gap": 8.0}]}
    text = "\n".join(_fairness_lines(data))
    assert "| B | 15 | 10.0 | +10.0 |" in text
    assert "age mae by race: B 10.0 vs A 2.0" in text


def test_card_command():
    from typer.testing import CliRunner

    from mien.cli import app

    result = CliRunner().invoke(app, ["card", "gender"])
    assert result.exit_code == 0 and "gender presentation" in result.output and "Out of scope" in result.output
    assert CliRunner().invoke(app, ["card", "nope"]).exit_code == 2


def test_attributes_on_the_astronaut(astronaut, tmp_path):
    import mien
    from mien.face.attributes import AGE_INTERVAL_Q

    with mien.Analyzer(attributes=True) as analyzer:
        faces = analyzer.analyze(astronaut)
        empty = analyzer.analyze(np.full((120, 120, 3), 128, np.uint8))
    age_low_high = faces.age[0]
    assert 22 <= age_low_high[0] <= 50  # Eileen Collins, 35 when photographed
    assert age_low_high[1] < age_low_high[0] < age_low_high[2]
    assert age_low_high[2] - age_low_high[1] == pytest.approx(2 * AGE_INTERVAL_Q * (age_low_high[0] + 5), rel=1e-4)
    assert faces.female[0] > 0.9
    row = faces.to_pandas(landmarks="none").iloc[0]
    assert row["gender_presentation"] == "female" and row["apparent_age"] == pytest.approx(age_low_high[0])
    assert "apparent_age" in empty.to_pandas().columns  # same columns when no face is found
    with mien.Analyzer() as plain:
        assert "apparent_age" not in plain.analyze(astronaut).to_pandas().columns  # off by default


def test_attributes_on_held_out_utkface():
    folder = needs_dataset("utkface")
    import mien
    from mien.io.images import load_image
    from mien.datasets.utkface import index

    table = index(folder)
    held = table[table["split"] == "test"].iloc[::8].head(40)
    errors, right = [], []
    with mien.Analyzer(attributes=True) as analyzer:
        for row in held.itertuples():
            faces = analyzer.analyze_loaded(load_image(row.path))
            if len(faces):
                errors.append(abs(faces.age[0, 0] - row.age))
                right.append((faces.female[0] >= 0.5) == (row.gender == "female"))
    assert len(errors) >= 38
    assert np.mean(errors) < 9 and np.mean(right) > 0.75


def test_fairness_results_are_consistent():
    """The committed fairness results (from `mien fairness --write-cards`) match the cards."""
    from pathlib import Path

    from mien.report.card import card_data

    results = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "fairness_results.json").read_text())
    assert set(results["groups"]) == {"age_band", "gender", "race"}
    detector = card_data("detector")["fairness"]
    assert detector["groups"]["race"] == [{"group": r["group"], "faces": r["faces"], "detection_rate": r["detection_rate"]}
                                          for r in results["groups"]["race"]]
