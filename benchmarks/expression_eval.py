"""Measure the shipped expression model and write its model card.

    python benchmarks/expression_eval.py --training runs/expr/training.json runs/expr-ft/training.json

Evaluates FER+ test, FER+ valid and AffectNet-8 valid through `mien.expression.evaluate`
(the same path as `mien eval`), measures classifier speed, runs the image-only ablation
(blendshape input switched off) on cached crops, and writes
`benchmarks/expression_eval.json`, `src/mien/data/cards/expression.json` and `docs/cards/expression.md`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
from pathlib import Path

import numpy as np

from mien.expression.classifier import ExpressionClassifier
from mien.expression.evaluate import classifier_speed, evaluate
from mien.models import resolve
from mien.report.card import render_expression_card
from mien.train.cache import cache_for_classifier
from mien.datasets.expressions import read_builtin

ROOT = Path(__file__).resolve().parents[1]
# FER+ under both protocols: majority (the FER+ authors', which published figures use) and all faces.
SETS = ("ferplus-test-majority", "ferplus-test", "ferplus-valid-majority", "ferplus-valid", "affectnet8-valid",
        "rafdb-valid", "rafdb-test")
BALANCED_SETS = ("ferplus-test-majority", "ferplus-test", "affectnet8-valid", "rafdb-test")  # also balanced
# Also under the set's own learned prior, where the model has one (RAF-DB-trained models).
OWN_PRIOR = {"ferplus-test-majority": "ferplus", "ferplus-test": "ferplus", "rafdb-test": "rafdb"}


def _parameters(path: Path) -> int:
    import onnx

    return int(sum(np.prod(t.dims) for t in onnx.load(str(path)).graph.initializer))


KDEF_OUT_OF_FOLD = ROOT / "benchmarks" / "kdef_oof.json"


def _image_only(classifier: ExpressionClassifier, data: dict) -> dict:
    labels = data["targets"].argmax(1)
    with_blend = classifier.predict(data["crops"], data["blendshapes"]).argmax(1)
    without = classifier.predict(data["crops"], np.full_like(data["blendshapes"], np.nan)).argmax(1)
    return {"with_blendshapes": float((with_blend == labels).mean()), "image_only": float((without == labels).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--training", type=Path, nargs="+", default=None,
                        help="training.json of each training step, in order (base run, then fine-tuning); "
                             "default: the steps recorded in the shipped card (a model re-quantized, not retrained)")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "expr")
    parser.add_argument("--model", type=Path, default=None, help="another expression ONNX (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "expression_eval.json")
    parser.add_argument("--no-card", action="store_true", help="only measure (e.g. the previous model, for RESULTS)")
    args = parser.parse_args()

    classifier = ExpressionClassifier(args.model)
    balanced = ExpressionClassifier(args.model, prior="balanced")
    evaluations = {}
    runs = [(name, classifier, name) for name in SETS]
    runs += [(name, balanced, f"{name}, balanced prior") for name in BALANCED_SETS]
    for prior in sorted(set(OWN_PRIOR.values())):
        try:
            own = ExpressionClassifier(args.model, prior=prior)
        except ValueError:  # a model without that prior
            continue
        runs += [(name, own, f"{name}, {prior} prior") for name, p in OWN_PRIOR.items() if p == prior]
    for name, model, key in runs:
        labelled = read_builtin(name, args.datasets)
        report = evaluate(name, labelled.paths, labelled.labels, labelled.classes_present, crops=True,
                          classifier=model)
        evaluations[key] = report
        print(f"{key}: accuracy {report['accuracy']:.4f} macro-F1 {report['macro_f1']:.4f} ECE {report['ece']:.4f}")
    hardware = f"{platform.machine()}, {__import__('os').cpu_count()} cores"
    speed = {**classifier_speed(classifier, batch=256, repeats=40), "hardware": hardware}
    path = args.model or resolve("expression")
    ablations = {}
    for name in ("ferplus-test-majority", "ferplus-test", "affectnet8-valid", "rafdb-test"):
        # the cache is rebuilt only if it does not match the data's files and today's framing.
        data = cache_for_classifier(read_builtin(name, args.datasets), args.cache, classifier.input_size,
                                    classifier.colour, classifier.render_rule)
        r = _image_only(classifier, data)
        ablations[name] = (f"accuracy {100 * r['with_blendshapes']:.1f}% with blendshapes, "
                           f"{100 * r['image_only']:.1f}% with the image alone")
    args.out.write_text(json.dumps({"model": str(path), "evaluations": evaluations, "speed": speed,
                                    "ablations": ablations}, indent=2))
    if args.no_card:
        return
    cards = ROOT / "src" / "mien" / "data" / "cards"
    stages = ([json.loads(path.read_text()) for path in args.training] if args.training
              else json.loads((cards / "expression.json").read_text())["stages"])
    card = {
        "model": {"file": path.name, "size_mb": path.stat().st_size / 1e6,
                  "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "parameters": _parameters(path)},
        "training": stages[-1],
        "stages": stages,
        "quantized": classifier.metadata.get("quantized"),
        "evaluations": {k: {key: v[key] for key in ("evaluated", "accuracy", "macro_f1", "balanced_accuracy", "ece",
                                                    "per_class", "no_face", "mesh_missing")}
                        for k, v in evaluations.items()},
        "speed": speed,
        "ablations": ablations,
    }
    if KDEF_OUT_OF_FOLD.exists():  # `benchmarks/kdef_training.py ... --json`: the recipe on KDEF people it never saw
        card["held_out_posed"] = json.loads(KDEF_OUT_OF_FOLD.read_text())
    cards.mkdir(parents=True, exist_ok=True)
    (cards / "expression.json").write_text(json.dumps(card, indent=2))
    (ROOT / "docs" / "cards" / "expression.md").write_text(render_expression_card(card))
    print(json.dumps({"speed": speed, "ablations": ablations}, indent=2))


if __name__ == "__main__":
    main()
