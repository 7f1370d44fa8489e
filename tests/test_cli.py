"""The `mien` command as a user runs it (subprocesses, real files)."""

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image


def mien(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "mien", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300, env=env)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory, astronaut):
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(astronaut).save(folder / "astro.jpg")
    Image.fromarray(astronaut[:, ::-1]).save(folder / "mirror.png")
    Image.new("RGB", (320, 240), (40, 90, 160)).save(folder / "sky.jpg")
    return folder


def test_api_and_cli_write_the_same_columns_by_default(tmp_path, photo_dir):
    """`mien.analyze(paths)` and `mien analyze paths` give the same table (landmarks included), the
    no-face image first so an empty row fixes no column."""
    import mien as mien_api

    out = tmp_path / "faces.parquet"
    paths = [photo_dir / "sky.jpg", photo_dir / "astro.jpg"]
    mien_cli = mien("analyze", *paths, "-o", out, "-q")
    assert mien_cli.returncode == 0, mien_cli.stderr
    from_cli = pd.read_parquet(out)
    from_api = mien_api.analyze(paths, progress=False)
    assert list(from_api.columns) == list(from_cli.columns)
    assert from_api.mien.landmarks.shape == (2, 478, 2)


def test_analyze_folder_writes_table_and_annotations(tmp_path, photo_dir):
    out = tmp_path / "faces.parquet"
    result = mien("analyze", photo_dir, "-o", out, "--annotate", tmp_path / "ann")
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    assert len(table) == 3
    by_name = {s.rsplit("/", 1)[-1]: row for s, row in zip(table["source"], table.itertuples())}
    assert by_name["sky.jpg"].face_found is False or not by_name["sky.jpg"].face_found
    assert by_name["astro.jpg"].pose_roll * by_name["mirror.png"].pose_roll < 0
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == [
        "astro_annotated.jpg", "mirror_annotated.jpg", "sky_annotated.jpg"]
    assert "astro.jpg" in result.stdout and "wrote 3 rows for 3 of 3 inputs" in " ".join(result.stdout.split())


def test_bad_inputs_do_not_stop_the_batch(tmp_path, photo_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "text.png").write_text("not an image")
    good = photo_dir / "astro.jpg"
    out = tmp_path / "faces.jsonl"
    result = mien("analyze", bad / "zero.jpg", good, bad / "text.png", tmp_path / "missing.jpg", "-o", out, "-q")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 3
    assert any("zero.jpg: empty file" in e for e in errors)
    assert any("missing.jpg: no such file" in e for e in errors)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["face_found"] is True
    assert "3 of 4 inputs failed" in result.stderr
    alone = mien("analyze", bad / "zero.jpg", "-o", tmp_path / "none.csv", "-q")
    assert alone.returncode == 1 and "mien: 1 of 1 input failed" in alone.stderr  # the count agrees with its noun


def test_a_folder_without_images_is_a_failed_input_named_in_one_line(tmp_path, photo_dir):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("no pictures here")
    out = tmp_path / "faces.csv"
    result = mien("analyze", notes, photo_dir / "astro.jpg", "-o", out, "-q")
    assert result.returncode == 1 and "1 of 2 inputs failed" in result.stderr
    assert f"error: {notes}: a folder without images" in result.stderr
    assert pd.read_csv(out)["face_found"].all()
    alone = mien("analyze", notes, "-o", out)
    assert alone.returncode == 1 and "no images to analyse" in alone.stderr  # not "no inputs given"
    import mien as api

    with pytest.warns(UserWarning, match="1 of 2 inputs could not be read"):
        table = api.analyze([notes, photo_dir / "astro.jpg"], progress=False)
    assert len(table) == 1 and table.attrs["errors"][0].startswith(f"{notes}: a folder without images")


def test_openface_csv(tmp_path, photo_dir):
    out = tmp_path / "of.csv"
    assert mien("analyze", photo_dir / "astro.jpg", "-o", out, "--format", "openface", "-q").returncode == 0
    assert {"AU12_r", "AU12_c", "pose_Rx", "x_0"} <= set(pd.read_csv(out).columns)


def test_usage_errors_exit_2(tmp_path, photo_dir):
    assert mien("analyze", photo_dir, "-o", tmp_path / "out.xlsx").returncode == 2
    assert mien("analyze", photo_dir, "--mode", "sloppy").returncode == 2
    assert mien("analyze", photo_dir, "--prior", "uniform").returncode == 2


def test_demo_writes_table_and_picture(tmp_path):
    result = mien("demo", "--out", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "demo" / "astronaut.csv")
    assert len(table) == 1 and table["face_found"][0]
    assert table["AU12"][0] > 0.5
    assert (tmp_path / "demo" / "astronaut_annotated.jpg").stat().st_size > 10_000
    assert "wrote 1 row for 1 of 1 input to" in " ".join(result.stdout.split())  # not "1 rows ... 1 inputs"


def test_models_lists_verified_weights():
    result = mien("models")
    assert result.returncode == 0
    assert "face_landmarker" in result.stdout and "Apache-2.0" in result.stdout and "ok" in result.stdout


@pytest.mark.parametrize("width", [80, 120])
def test_models_read_well_in_a_narrow_terminal(width):
    """Every model's name, file and status on one line, its description in whole words (no letter-by-letter folds)."""
    from rich.console import Console

    from mien.cli.models import model_blocks
    from mien.models.registry import list_models, verify

    console = Console(width=width, record=True)
    for block in model_blocks(list_models(), verify):
        console.print(block)
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= width
    for info in list_models():
        head = next(line for line in lines if line.startswith(info.name + "  "))
        assert info.file in head and head.split()[1] == "ok"
    words = [w for line in lines for w in line.split()]
    assert sum(len(w) <= 2 for w in words) < 0.2 * len(words)  # whole words, not fragments
    assert len(lines) <= 7 * len(list_models())


@pytest.mark.parametrize("command", [[], ["analyze"], ["demo"], ["models"]])
def test_help_everywhere(command):
    result = mien(*command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


def test_keep_unconfirmed_flag_is_accepted(tmp_path):
    """The flag reaches the pipeline (its effect is tested in test_pipeline.py)."""
    img = tmp_path / "grey.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(img)
    out = tmp_path / "o.csv"
    assert mien("analyze", img, "-o", out, "--keep-unconfirmed", "-q").returncode == 0
    assert len(pd.read_csv(out)) == 1


def test_eval_folder_reports_a_known_confusion(tmp_path, astronaut):
    # The model reads the astronaut (and its mirror image) as happy: filed once under sad, the
    # confusion is known. A faceless image, an unreadable file and a non-class folder are extras.
    root = tmp_path / "labelled"
    for folder in ("happy", "sad", "misc"):
        (root / folder).mkdir(parents=True)
    Image.fromarray(astronaut).save(root / "happy" / "a.jpg")
    Image.fromarray(astronaut[:, ::-1]).save(root / "happy" / "b.png")
    Image.fromarray(astronaut).save(root / "sad" / "c.jpg")
    Image.new("RGB", (320, 240), (40, 90, 160)).save(root / "sad" / "sky.jpg")
    (root / "happy" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(astronaut).save(root / "misc" / "d.jpg")
    result = mien("eval", root, "--json", "-o", tmp_path / "ev")
    assert result.returncode == 1, result.stderr  # one unreadable input
    report = json.loads(result.stdout)
    assert report["evaluated"] == 3 and report["no_face"] == 1 and len(report["errors"]) == 1
    assert "broken.jpg" in report["errors"][0]
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["classes_present"] == ["happy", "sad"]
    assert report["per_class"]["happy"]["precision"] == pytest.approx(2 / 3)
    assert report["per_class"]["happy"]["recall"] == 1.0
    assert report["per_class"]["sad"]["recall"] == 0.0
    assert report["macro_f1"] == pytest.approx(0.4)
    assert "misc" in result.stderr and "dropped from the metrics" in result.stderr
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 1000
    assert (tmp_path / "ev" / "reliability.png").stat().st_size > 1000
    assert report["classifier"]["faces_per_s"] > 0


def test_balanced_prior_changes_the_probabilities_not_the_smile(tmp_path, photo_dir):
    tables = {}
    for prior in ("natural", "balanced"):
        out = tmp_path / f"{prior}.csv"
        assert mien("analyze", photo_dir / "astro.jpg", "-o", out, "--prior", prior, "-q").returncode == 0
        tables[prior] = pd.read_csv(out)
    assert (tables["natural"]["expression"] == "happy").all() and (tables["balanced"]["expression"] == "happy").all()
    # Fear is about 5x rarer than neutral in FER+, so the balanced prior raises it relative to neutral.
    ratio = {p: t["expr_fear"][0] / t["expr_neutral"][0] for p, t in tables.items()}
    assert ratio["balanced"] > 2 * ratio["natural"]


def test_eval_unknown_dataset_is_a_usage_error():
    result = mien("eval", "no-such-set")
    assert result.returncode == 2 and "not a built-in dataset" in result.stderr


def test_card_prints_the_expression_model_card(tmp_path):
    result = mien("card", "expression", "--write", tmp_path / "card.md")
    assert result.returncode == 0, result.stderr
    for part in ("Out of scope", "ferplus-test", "research and non-commercial", "temperature", "Limits"):
        assert part in result.stdout
    assert (tmp_path / "card.md").read_text() == result.stdout


@pytest.mark.parametrize("width", [80, 120, 200])
def test_summary_table_fits_the_terminal(photo_dir, width):
    """The printed summary keeps one line per face at 80, 120 and 200 columns (it used to wrap each cell
    letter by letter at 80): the no-face image first, long file names shortened, never wrapped."""
    from rich.console import Console

    import mien as mien_api
    from mien.cli.summary import summary_table

    long_name = photo_dir / "a_photo_with_a_rather_long_file_name_from_a_phone.jpg"
    long_name.write_bytes((photo_dir / "astro.jpg").read_bytes())
    frame = mien_api.analyze([photo_dir / "sky.jpg", photo_dir / "astro.jpg", long_name], progress=False,
                             attributes=True)
    console = Console(width=width, record=True, file=open(os.devnull, "w"))
    console.print(summary_table(frame, width=width))
    lines = [line.rstrip() for line in console.export_text().splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= width
    body = lines[lines.index(next(line for line in lines if line.strip().startswith("─"))) + 1:]
    assert len(body) == 3  # one line per row
    assert body[0].split()[0] == "sky.jpg" and "no face found" in body[0]
    assert "happy" in body[1] and "AU" in body[1] and "a_photo_with" in body[2]
    assert ("yaw/pitch/roll" in lines[1]) == (width >= 110) and ("age, gender" in lines[1]) == (width >= 190)
    # calibrated (`mien analyze --reference`): a column more, still one line per face and no cell cut short
    reference = pd.DataFrame({"person": "p", "path": [str(photo_dir / "astro.jpg"), str(long_name)],
                              "neutral": [True, False]})
    console = Console(width=width, record=True, file=open(os.devnull, "w"))
    console.print(summary_table(mien_api.calibrate(frame, reference), width=width))
    lines = [line.rstrip() for line in console.export_text().splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= width and "calibrated" in lines[1]
    body = lines[lines.index(next(line for line in lines if line.strip().startswith("─"))) + 1:]
    assert len(body) == 3 and "…" not in lines[1]  # every header whole
    assert re.search(r"happy \d\.\d\d +happy \d\.\d\d", body[2])  # both readings whole


@pytest.mark.parametrize("args", [["--help"], ["analyze", "--help"], ["serve", "--help"]])
def test_help_imports_nothing_heavy(args):
    """`mien --help` and a command's help answer without numpy, OpenCV, pandas or the runtimes (they used to
    take 1.1-2.3 s here, most of it imports)."""
    code = ("import sys\nfrom mien.cli import app\nsys.argv = ['mien', *sys.argv[1:]]\ntry:\n    app()\n"
            "except SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('numpy', 'cv2', 'pandas', 'onnxruntime', 'mediapipe', 'ai_edge_litert')"
            " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "100"})
    assert "Usage" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "HEAVY []"


@pytest.mark.parametrize("args, hidden, extra", [(["serve", "--port", "0"], "fastapi", "serve"),
                                                 (["query", ".", "SELECT 1"], "duckdb", "sql")])
def test_a_missing_extra_is_one_line_naming_the_install(args, hidden, extra):
    code = (f"import sys\nsys.modules[{hidden!r}] = None\nfrom mien.cli import app\n"
            "sys.argv = ['mien', *sys.argv[1:]]\napp()")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f'pip install "mien[{extra}]"' in lines[0], result.stderr
