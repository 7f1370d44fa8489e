"""UTKFace: labels from file names, a fixed split, and the mesh of every face (cached).

File names are `age_gender_race_date.jpg` (gender 0 male, 1 female; race 0 White, 1 Black,
2 Asian, 3 Indian, 4 Others). The split is by a hash of the file name: 70% train, 15% valid,
15% test, the same on every machine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

GENDERS = ("male", "female")
RACES = ("White", "Black", "Asian", "Indian", "Others")


@dataclass(frozen=True)
class UtkLabel:
    age: int
    gender: str
    race: str


def parse_name(name: str) -> UtkLabel | None:
    """Labels from a UTKFace file name, or None when the name does not follow the scheme."""
    parts = Path(name).name.split("_")
    if len(parts) < 4:
        return None
    try:
        age, gender, race = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if not (0 <= age <= 120 and gender in (0, 1) and 0 <= race < len(RACES)):
        return None
    return UtkLabel(age, GENDERS[gender], RACES[race])


def split_of(name: str) -> str:
    bucket = int(hashlib.md5(Path(name).name.encode()).hexdigest(), 16) % 100
    return "train" if bucket < 70 else "valid" if bucket < 85 else "test"


def index(folder: str | Path) -> pd.DataFrame:
    """One row per labelled image: path, age, gender, race, split (unparseable names skipped)."""
    rows = []
    for path in sorted(Path(folder).glob("*.jpg")):
        label = parse_name(path.name)
        if label is not None:
            rows.append({"path": str(path), "age": label.age, "gender": label.gender, "race": label.race,
                         "split": split_of(path.name)})
    return pd.DataFrame(rows)


def mesh_cache(folder: str | Path, cache: str | Path) -> pd.DataFrame:
    """`index(folder)` plus, per image, whether the pipeline found a face (detector), whether its
    mesh was made, and the landmarks, blendshapes and expression probabilities of the most confident
    face. Computed once and kept in `cache` (npz + parquet)."""
    cache = Path(cache)
    table_path, arrays_path = cache / "utkface.parquet", cache / "utkface_arrays.npz"
    if table_path.exists() and arrays_path.exists():
        return pd.read_parquet(table_path)
    from rich.progress import track

    from mien.analyzer import Analyzer, AnalyzerOptions
    from mien.io.images import load_image

    table = index(folder)
    n = len(table)
    landmarks = np.full((n, 478, 3), np.nan, np.float32)
    blendshapes = np.full((n, 52), np.nan, np.float32)
    expression = np.full((n, 8), np.nan, np.float32)
    detected, meshed, status = np.zeros(n, bool), np.zeros(n, bool), np.full(n, None, object)
    with Analyzer(AnalyzerOptions(mode="auto", require_mesh=False)) as analyzer:
        for i, path in enumerate(track(table["path"], description="UTKFace mesh")):
            faces = analyzer.analyze_loaded(load_image(path))
            best = faces.main_face()
            if best is None:
                continue
            detected[i] = True
            if faces.has_mesh[best]:
                meshed[i] = True
                landmarks[i], blendshapes[i] = faces.landmarks[best], faces.blendshapes[best]
                expression[i], status[i] = faces.expression[best], faces.status[best]
    table["detected"], table["meshed"], table["expression_status"] = detected, meshed, status
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(arrays_path, landmarks=landmarks, blendshapes=blendshapes, expression=expression)
    table.to_parquet(table_path, index=False)
    return table


def cached_arrays(cache: str | Path) -> dict[str, np.ndarray]:
    with np.load(Path(cache) / "utkface_arrays.npz") as data:
        return {k: data[k] for k in data.files}
