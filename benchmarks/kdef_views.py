"""Faces by head angle on the shared KDEF: found, with a mesh, flagged, and read correctly, per view.

Usage: python benchmarks/kdef_views.py [--data ../shared/datasets/kdef] [--json benchmarks/kdef_views.json]
Views: S (frontal), HL and HR (half profiles, about 45 degrees of yaw). Each photo holds one face. Expression
accuracy is over KDEF's 7 classes (mien's probabilities restricted to them), on the photos with a mesh.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mien.analyzer import Analyzer, AnalyzerOptions
from mien.expression.classes import EXPRESSIONS
from mien.io.images import load_image

VIEWS = ("S", "HL", "HR")
KDEF_CLASSES = ("neutral", "happy", "surprise", "sad", "anger", "disgust", "fear")


def evaluate(data: Path) -> list[dict]:
    columns = [EXPRESSIONS.index(name) for name in KDEF_CLASSES]
    results = []
    with Analyzer(AnalyzerOptions(mode="auto")) as analyzer:
        for view in VIEWS:
            photos = sorted((data / view).glob("*/*.jpg"))
            found = meshed = profile = correct = 0
            seconds = 0.0
            for path in photos:
                rgb = load_image(path).rgb
                start = time.perf_counter()
                faces = analyzer.analyze(rgb)
                seconds += time.perf_counter() - start
                if not len(faces):
                    continue
                found += 1
                best = int(np.argmax(faces.scores))
                profile += bool(faces.flag("profile")[best])
                if faces.has_mesh[best]:
                    meshed += 1
                    guess = KDEF_CLASSES[int(np.argmax(faces.expression[best, columns]))]
                    correct += guess == path.parent.name
            n = len(photos)
            results.append({"view": view, "photos": n, "found": round(found / n, 3), "mesh": round(meshed / n, 3),
                            "flagged_profile": round(profile / n, 3),
                            "expression_accuracy": round(correct / max(meshed, 1), 3),
                            "ms_per_photo": round(1000 * seconds / n, 1)})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).parents[1] / "../shared/datasets/kdef")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = evaluate(args.data)
    for row in results:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
