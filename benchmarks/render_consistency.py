"""Does the expression reading depend on how sharp and colourful the face is? The same face crops, read as they are
and rendered like FER+'s faces (48 px, grey), plus grey at full size and colour at 48 px.

Usage: python benchmarks/render_consistency.py [--photos ../shared/datasets/utkface] [--labelled DIR] [--limit N]
       [--model OTHER.onnx] [--json benchmarks/render_consistency.json]

A label-free check on web photos the model never saw: a reading that changes with the rendering follows the image
quality (which training set the face resembles), not the face. `--photos` is a folder of one-face crops (UTKFace's
chips); `--labelled` a folder `DIR/<class>/*` of crops (RAF-DB test, say), where each rendering's accuracy is
reported too. Each image is rendered whole, so use face crops, not scenes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from rich.progress import track

from mien.analyzer import Analyzer, AnalyzerOptions
from mien.expression.classes import EXPRESSIONS
from mien.expression.classifier import ExpressionClassifier
from mien.io.images import IMAGE_SUFFIXES, load_image

RENDERINGS = ("as_is", "grey", "colour48", "grey48")


def render(rgb: np.ndarray, how: str) -> np.ndarray:
    """The crop as `how` says: as it is, grey (kept 3-channel), or shrunk to 48 px (colour or grey)."""
    if how.endswith("48"):
        rgb = cv2.resize(rgb, (48, 48), interpolation=cv2.INTER_AREA)
    if how.startswith("grey"):
        rgb = np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    return rgb


def read_all(paths: list[Path], model: Path | None = None) -> dict[str, np.ndarray]:
    """Each rendering's label per image (-1 where no face was read), by the shipped expression model or `model`."""
    labels = {how: np.full(len(paths), -1) for how in RENDERINGS}
    with Analyzer(AnalyzerOptions()) as analyzer:
        if model is not None:
            analyzer._classifier = ExpressionClassifier(model, spin=False)
        for i, path in enumerate(track(paths, description="reading")):
            rgb = load_image(path).rgb
            for how in RENDERINGS:
                faces = analyzer.analyze(render(rgb, how))
                readable = np.flatnonzero(faces.has_mesh & np.isfinite(faces.expression).all(1)) if len(faces) else []
                if len(readable):
                    best = readable[np.argmax(faces.scores[readable])]
                    labels[how][i] = int(np.argmax(faces.expression[best]))
    return labels


def summary(labels: dict[str, np.ndarray], truth: np.ndarray | None = None) -> dict:
    read = np.all([labels[how] >= 0 for how in RENDERINGS], axis=0)
    out: dict = {"images": int(len(read)), "read_in_every_rendering": int(read.sum()), "renderings": {}}
    base = labels["as_is"][read]
    for how in RENDERINGS:
        guess = labels[how][read]
        entry = {"share": {name: round(float((guess == k).mean()), 4) for k, name in enumerate(EXPRESSIONS)},
                 "agrees_with_as_is": round(float((guess == base).mean()), 4)}
        if truth is not None:
            entry["accuracy"] = round(float((guess == truth[read]).mean()), 4)
        out["renderings"][how] = entry
    moved = labels["grey48"][read][base == EXPRESSIONS.index("contempt")]
    out["as_is_contempt_read_grey48_as"] = {name: int((moved == k).sum()) for k, name in enumerate(EXPRESSIONS)}
    return out


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--photos", type=Path, default=root.parent / "shared" / "datasets" / "utkface")
    parser.add_argument("--labelled", type=Path, default=None, help="DIR/<class>/* crops with expression labels")
    parser.add_argument("--limit", type=int, default=1000, help="every k-th photo so that at most N are read")
    parser.add_argument("--model", type=Path, default=None, help="another expression ONNX (default: the shipped one)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report = {}
    photos = _images(args.photos)
    photos = photos[::max(1, len(photos) // args.limit)][:args.limit]
    report["photos"] = {"folder": str(args.photos), **summary(read_all(photos, args.model))}
    if args.labelled:
        paths = [p for p in _images(args.labelled) if p.parent.name in EXPRESSIONS]
        truth = np.array([EXPRESSIONS.index(p.parent.name) for p in paths])
        report["labelled"] = {"folder": str(args.labelled), **summary(read_all(paths, args.model), truth)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
