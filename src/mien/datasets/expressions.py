"""Readers for the labelled face datasets: FER+ (annotator votes), RAF-DB and class-per-folder sets.

Each reader returns a `LabelledSet`: image paths plus an (n, 8) target distribution over
`EXPRESSIONS` (vote shares for FER+, one-hot for folders) and the majority label.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mien.expression.classes import EXPRESSIONS, canonical_expression

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
FERPLUS_PROTOCOLS = ("plurality", "majority")
BUILTIN = {  # name: (dataset folder, split, FER+ protocol)
    "ferplus-train": ("ferplus", "train", "plurality"),
    "ferplus-valid": ("ferplus", "valid", "plurality"),
    "ferplus-test": ("ferplus", "test", "plurality"),
    "ferplus-valid-majority": ("ferplus", "valid", "majority"),
    "ferplus-test-majority": ("ferplus", "test", "majority"),
    "affectnet8-train": ("affectnet8", "train", None),
    "affectnet8-valid": ("affectnet8", "valid", None),
    # RAF-DB basic: 7 classes (no contempt). Its official test split is for reporting only; mien's
    # validation split is carved from train by a fixed hash of the file name, 10% of each class.
    "rafdb-train": ("rafdb", "train", "train"),
    "rafdb-valid": ("rafdb", "train", "valid"),
    "rafdb-test": ("rafdb", "test", None),
    # The shared KDEF: 34 posers, 7 classes (no contempt), three views each. Two person-level folds (the sorted
    # person ids alternately, as benchmarks/neutral_kdef.py splits them), so that one can be learned and the
    # other people measured; kdef-train is all of them.
    "kdef-train": ("kdef", "all", None),
    "kdef-fold0": ("kdef", "all", 0),
    "kdef-fold1": ("kdef", "all", 1),
}
RAFDB_VALID_SHARE = 0.10
KDEF_VIEWS = ("S", "HL", "HR")


@dataclass
class LabelledSet:
    """Face images with expression targets."""

    name: str
    paths: list[Path]
    targets: np.ndarray  # (n, 8) float32, rows sum to 1
    classes_present: tuple[str, ...] = EXPRESSIONS

    @property
    def labels(self) -> np.ndarray:
        """(n,) majority class index."""
        return self.targets.argmax(1)

    def __len__(self) -> int:
        return len(self.paths)


def read_ferplus(root: Path, split: str, protocol: str = "plurality") -> LabelledSet:
    """A FER+ split; targets are the vote shares of the 8 emotions, the label their most-voted one.

    `plurality`: every face whose most-voted label is an emotion (not unknown or not-a-face);
    test keeps 3,545 faces, ~400 of them with no emotion chosen by a majority of annotators.
    `majority`: the FER+ authors' protocol (Barsoum et al. 2016, used for their 85.0% VGG13 and by
    later papers): single votes are dropped as outliers, then a face is kept only if one label has
    more than half of the remaining votes and that label is an emotion; test keeps 3,137 faces.
    """
    if protocol not in FERPLUS_PROTOCOLS:
        raise ValueError(f"FER+ protocol must be one of {FERPLUS_PROTOCOLS}, not {protocol!r}")
    paths, targets = [], []
    with open(root / f"{split}_votes.csv", newline="") as handle:
        for row in csv.reader(handle):
            votes = np.array(row[2:12], dtype=np.float32)
            if votes.sum() == 0 or votes.argmax() >= 8:  # unknown or not-a-face wins
                continue
            if protocol == "majority":
                kept = np.where(votes > 1, votes, 0)
                if kept.max() <= kept.sum() / 2 or kept.argmax() >= 8:
                    continue
            emotions = votes[:8]
            paths.append(root / split / row[0])
            targets.append(emotions / emotions.sum())
    suffix = "-majority" if protocol == "majority" else ""
    return LabelledSet(f"ferplus-{split}{suffix}", paths, np.array(targets, np.float32).reshape(-1, 8))


def read_class_folders(root: Path, name: str | None = None) -> tuple[LabelledSet, list[str]]:
    """A `ROOT/<class>/*.jpg|png` folder; class names may be synonyms (angry, happiness...).

    Returns the set and the folder names that matched no class (skipped).
    """
    paths, labels, skipped = [], [], []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        cls = canonical_expression(folder.name)
        if cls is None:
            skipped.append(folder.name)
            continue
        for image in sorted(folder.iterdir()):
            if image.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(image)
                labels.append(EXPRESSIONS.index(cls))
    targets = np.eye(len(EXPRESSIONS), dtype=np.float32)[labels] if labels else np.zeros((0, 8), np.float32)
    present = tuple(c for i, c in enumerate(EXPRESSIONS) if i in set(labels))
    return LabelledSet(name or Path(root).name, paths, targets, present), skipped


def hash_split(labelled: LabelledSet, share: float, part: str) -> LabelledSet:
    """A stratified, reproducible split: per class, the `share` of files whose SHA-1 of the file name
    is lowest form "valid", the rest "train" (independent of file order or machine)."""
    keep = []
    for cls in range(labelled.targets.shape[1]):
        members = [i for i, label in enumerate(labelled.labels) if label == cls]
        ranked = sorted(members, key=lambda i: hashlib.sha1(Path(labelled.paths[i]).name.encode()).hexdigest())
        cut = int(round(share * len(ranked)))
        keep += ranked[:cut] if part == "valid" else ranked[cut:]
    keep.sort()
    return LabelledSet(labelled.name, [labelled.paths[i] for i in keep], labelled.targets[keep],
                       labelled.classes_present)


def kdef_person(path: Path) -> str:
    """A KDEF photo's person id, e.g. `F01` for `AF01NEHL.jpg`."""
    return Path(path).name[1:4]


def read_kdef(root: Path, name: str, fold: int | None = None) -> LabelledSet:
    """The shared KDEF's three views (`S`, `HL`, `HR`, each a class-per-folder set) as one set; with `fold` 0 or 1,
    only the people of that person-level fold (the sorted person ids alternately)."""
    parts = [read_class_folders(Path(root) / view, name)[0] for view in KDEF_VIEWS if (Path(root) / view).is_dir()]
    if not parts:
        raise FileNotFoundError(f"{name}: no view folders ({', '.join(KDEF_VIEWS)}) in {root}")
    paths = [p for part in parts for p in part.paths]
    targets = np.concatenate([part.targets for part in parts])
    if fold is not None:
        people = sorted({kdef_person(p) for p in paths})[fold::2]
        keep = [i for i, p in enumerate(paths) if kdef_person(p) in people]
        paths, targets = [paths[i] for i in keep], targets[keep]
    present = tuple(c for i, c in enumerate(EXPRESSIONS) if targets[:, i].any())
    return LabelledSet(name, paths, targets, present)


# Side in pixels of each built-in family's faces (their resolution), for `mien.expression.crop.RENDER_RULE`
# (KDEF's photos are whole heads; their faces span about 150 px).
NATIVE_SIDES = {"ferplus": 48, "affectnet8": 96, "rafdb": 100, "kdef": 150}


def native_side(name: str) -> int:
    """Image side of a built-in set (`ferplus-test` -> 48)."""
    return NATIVE_SIDES[name.split("-")[0]]


def read_builtin(name: str, datasets_dir: Path) -> LabelledSet:
    """One of `BUILTIN` (e.g. `ferplus-test`) from a datasets folder laid out like ../shared/datasets."""
    family, split, protocol = BUILTIN[name]
    root = Path(datasets_dir) / family
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: dataset folder {root} not found")
    if family == "ferplus":
        return read_ferplus(root, split, protocol)
    if family == "kdef":
        return read_kdef(root, name, protocol)
    labelled, _ = read_class_folders(root / split, name)
    if family == "rafdb" and protocol is not None:
        labelled = hash_split(labelled, RAFDB_VALID_SHARE, protocol)
    return labelled
