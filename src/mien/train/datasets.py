"""Readers for the labelled face datasets: FER+ (annotator votes) and class-per-folder sets.

Each reader returns a `LabelledSet`: image paths plus an (n, 8) target distribution over
`EXPRESSIONS` (vote shares for FER+, one-hot for folders) and the majority label.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mien.expression.classes import EXPRESSIONS, canonical_expression

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
BUILTIN = {
    "ferplus-train": ("ferplus", "train"),
    "ferplus-valid": ("ferplus", "valid"),
    "ferplus-test": ("ferplus", "test"),
    "affectnet8-train": ("affectnet8", "train"),
    "affectnet8-valid": ("affectnet8", "valid"),
}


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


def read_ferplus(root: Path, split: str) -> LabelledSet:
    """FER+ split with the usual majority protocol: faces whose top vote is unknown/NF are dropped."""
    paths, targets = [], []
    with open(root / f"{split}_votes.csv", newline="") as handle:
        for row in csv.reader(handle):
            votes = np.array(row[2:12], dtype=np.float32)
            if votes.sum() == 0 or votes.argmax() >= 8:  # unknown or not-a-face wins
                continue
            emotions = votes[:8]
            paths.append(root / split / row[0])
            targets.append(emotions / emotions.sum())
    return LabelledSet(f"ferplus-{split}", paths, np.array(targets, np.float32))


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


def read_builtin(name: str, datasets_dir: Path) -> LabelledSet:
    """One of `BUILTIN` (e.g. `ferplus-test`) from a datasets folder laid out like ../shared/datasets."""
    family, split = BUILTIN[name]
    root = Path(datasets_dir) / family
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: dataset folder {root} not found")
    if family == "ferplus":
        return read_ferplus(root, split)
    labelled, _ = read_class_folders(root / split, name)
    return labelled
