"""Custom expressions: the rules file format, its logic, and rules on real faces and real commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mien
from conftest import needs_dataset
from mien.expression.rules import RulesError, load_rules, parse_rules

SMILES = """
[expressions.duchenne_smile]
description = "smile reaching the eyes: cheek raiser with lip corner puller"
all = ["AU06_p", "AU12_p"]

[expressions.polite_smile]
all = ["AU12_p"]
none = ["AU06_p"]

[expressions.looking_away]
any = ["pose_yaw > 30", "pose_yaw < -30"]

[expressions.happy_not_away]
all = ["custom_duchenne_smile"]
none = ["custom_looking_away"]
"""
PHOTO = Path(mien.__file__).parent / "data" / "astronaut.jpg"


def test_product_logic_on_known_values():
    rules = parse_rules(SMILES)
    columns = {"AU06_p": np.array([0.9, 0.9, 0.1, np.nan]), "AU12_p": np.array([0.9, 0.6, 0.9, np.nan]),
               "pose_yaw": np.array([0.0, 40.0, -35.0, np.nan])}
    out = rules.evaluate(columns, 4)
    assert np.allclose(out["custom_duchenne_smile"][:3], [0.81, 0.54, 0.09])
    assert np.allclose(out["custom_polite_smile"][:3], [0.09, 0.06, 0.81])
    assert out["custom_looking_away"][:3].tolist() == [0.0, 1.0, 1.0]
    assert np.allclose(out["custom_happy_not_away"][:3], [0.81, 0.0, 0.0])
    assert all(np.isnan(values[3]) for values in out.values())  # no mesh, no reading


@pytest.mark.parametrize("text, problem", [
    ('[expressions.smile]\nall = ["AU6_p", "AU12_p"]', "rules.toml: rule 'smile': unknown column 'AU6_p' (did you mean 'AU06_p'?)"),
    ('[expressions.smile]\nall = ["pose_yaw"]', "rules.toml: rule 'smile': pose_yaw is not a 0-1 probability"),
    ('[expressions.smile]\nall = ["AU12_p >> 0.5"]', "rules.toml: rule 'smile': cannot read condition 'AU12_p >> 0.5'"),
    ('[expressions.smile]\ndescription = "no conditions"', "rules.toml: rule 'smile': needs at least one condition"),
    ('[expressions.smile]\nal = ["AU12_p"]', "rules.toml: rule 'smile': unknown key 'al'"),
    ('[expressions.Smile]\nall = ["AU12_p"]', "rules.toml: rule 'Smile': a name is lower-case"),
    ('[expressions.a]\nall = ["custom_b"]\n[expressions.b]\nall = ["AU12_p"]', "rule 'a': unknown column 'custom_b'"),
    ('[expressions.smile\nall = ["AU12_p"]', "rules.toml: not valid TOML"),
    ('[smile]\nall = ["AU12_p"]', "rules.toml: unknown top-level key 'smile'"),
])
def test_a_bad_rules_file_names_the_file_the_rule_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as error:
        load_rules(path)
    assert problem in str(error.value).replace(str(tmp_path) + "/", "")


def test_duchenne_rule_fires_on_faces_coded_au06_with_au12_and_not_on_au12_alone():
    """RAF-CE valid: every face whose FACS codes hold AU06 and AU12 (40) against 60 with AU12 but no AU06."""
    root = needs_dataset("rafce") / "valid"
    labels = pd.read_csv(root / "labels.csv")
    codes = labels["aus"].fillna("").astype(str).str.split("+")
    both = labels[codes.map(lambda c: "6" in c and "12" in c)]
    alone = labels[codes.map(lambda c: "12" in c and "6" not in c)].head(60)
    table = mien.analyze([root / "images" / f for f in list(both.file) + list(alone.file)], progress=False,
                         expressions=parse_rules(SMILES))
    table = table[table.face_found & ~table.flag_no_mesh].drop_duplicates("source")
    coded = table.source.map(lambda s: Path(s).name in set(both.file)).to_numpy()
    duchenne = table["custom_duchenne_smile"].to_numpy()
    fires_coded, fires_alone = (duchenne[coded] >= 0.5).mean(), (duchenne[~coded] >= 0.5).mean()
    assert fires_coded >= 0.1 and fires_coded > 3 * fires_alone  # measured 0.17 against 0.05
    assert (duchenne[coded][:, None] > duchenne[~coded][None]).mean() > 0.75  # AUROC, measured 0.80
    polite = table["custom_polite_smile"].to_numpy()
    assert np.median(polite[~coded]) > 0.5 > np.median(polite[coded])


def _mien(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mien", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_analyze_writes_custom_columns_and_the_rules_in_provenance(tmp_path):
    rules = tmp_path / "smiles.toml"
    rules.write_text(SMILES)
    out = tmp_path / "faces.csv"
    result = _mien("analyze", PHOTO, "-o", out, "-q", "--expressions", rules)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert [c for c in table.columns if c.startswith("custom_")] == [
        "custom_duchenne_smile", "custom_polite_smile", "custom_looking_away", "custom_happy_not_away"]
    row = table.iloc[0]
    assert row["custom_duchenne_smile"] == pytest.approx(row["AU06_p"] * row["AU12_p"], rel=1e-3)
    record = mien.read(out).attrs["provenance"]
    assert record["options"]["expressions"]["sha256"] == load_rules(rules).sha256
    assert "duchenne_smile" in record["options"]["expressions"]["text"]


def test_a_typo_in_the_rules_stops_before_any_work(tmp_path):
    rules = tmp_path / "typo.toml"
    rules.write_text('[expressions.confusion]\nall = ["AU04_p", "AU7_p"]\n')
    out = tmp_path / "faces.csv"
    result = _mien("analyze", PHOTO, "-o", out, "--expressions", rules)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"mien: {rules}: rule 'confusion': unknown column 'AU7_p' (did you mean 'AU07_p'?)"]
    assert not out.exists()


def test_batch_writes_custom_columns_in_every_part(tmp_path):
    rules = tmp_path / "smiles.toml"
    rules.write_text(SMILES)
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(2):
        (photos / f"p{k}.jpg").write_bytes(PHOTO.read_bytes())
    result = _mien("batch", photos, "-o", tmp_path / "out", "--expressions", rules)
    assert result.returncode == 0, result.stderr
    table = mien.read(tmp_path / "out")
    assert len(table) == 2 and table["custom_duchenne_smile"].notna().all()
    assert np.allclose(table["custom_duchenne_smile"], table["AU06_p"] * table["AU12_p"], rtol=1e-3)


def test_the_server_adds_custom_columns_to_image_rows(tmp_path):
    import httpx

    import io

    import pandas as pd

    from server_helpers import running_server, wait_for_job

    rules = tmp_path / "smiles.toml"
    rules.write_text(SMILES)
    with running_server(tmp_path / "data", "--expressions", str(rules)) as url:
        reply = httpx.post(url + "/api/images", params={"explain": "false"}, timeout=120,
                           files={"file": ("astronaut.jpg", PHOTO.read_bytes(), "image/jpeg")})
        # a photo job calibrated per person reads every rule again from the calibrated columns
        with httpx.Client(base_url=url, timeout=60) as client:
            files = [("files", (name, PHOTO.read_bytes())) for name in ("rest.jpg", "later.jpg")]
            submitted = client.post("/api/jobs", files=files,
                                    data={"reference": "person,file,neutral\nx,rest.jpg,1\nx,later.jpg,0\n"})
            assert submitted.status_code == 202, submitted.text
            job = wait_for_job(client, submitted.json()["id"])
            assert job["status"] == "done" and not job["errors"], job
            table = pd.read_parquet(io.BytesIO(client.get(f"/api/jobs/{job['id']}/results?format=parquet").content))
    assert reply.status_code == 200, reply.text
    [row] = reply.json()["rows"]
    assert row["custom_duchenne_smile"] == pytest.approx(row["AU06_p"] * row["AU12_p"], rel=1e-3)
    assert 0 <= row["custom_polite_smile"] <= 1
    assert np.allclose(table["custom_duchenne_smile_cal"], table["AU06_p_cal"] * table["AU12_p_cal"], rtol=1e-3)
    assert table["custom_polite_smile_cal"].between(0, 1).all()


def test_builtin_compound_rules_name_raf_ce_compounds_better_than_the_majority(tmp_path):
    root = needs_dataset("rafce") / "valid"
    result = subprocess.run([sys.executable, "-m", "mien", "eval-rules", str(root), "--limit", "300", "--json",
                             "-o", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["faces"] >= 290 and len(report["recall"]) >= 10
    assert report["top1"] >= 0.4 > report["majority"]["top1"] and report["top3"] >= 0.7
    assert report["top1"] > report["expression_blend"]["accuracy"]  # the rules name compounds the blends miss
    column = report["compound_column"]  # the default compound column on the same faces
    assert column["faces"] == report["faces"] and column["top1"] >= 0.45 and column["top3"] >= 0.75
    assert (tmp_path / "rules.json").is_file()


def test_rules_named_after_no_compound_are_refused_with_one_line(tmp_path):
    rules = tmp_path / "smiles.toml"
    rules.write_text('[expressions.duchenne_smile]\nall = ["AU06_p", "AU12_p"]\n')
    root = needs_dataset("rafce") / "valid"
    result = subprocess.run([sys.executable, "-m", "mien", "eval-rules", str(root), "--rules", str(rules), "--limit",
                             "5", "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "smiles.toml" in lines[0] and "happily_surprised" in lines[0]


def test_builtin_rule_sets_load_by_name():
    compound, facs = load_rules("compound"), load_rules("compound-facs")
    assert len(compound.rules) == len(facs.rules) == 14
    assert "custom_happily_surprised" in compound.columns
    happily_surprised = next(r for r in facs.rules if r.name == "happily_surprised")
    assert {c.column for c in happily_surprised.all} == {"AU01_p", "AU02_p", "AU12_p", "AU25_p"}
