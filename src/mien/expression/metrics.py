"""Classification metrics for expression evaluation: accuracy, macro-F1, per-class P/R/F1, confusion."""

from __future__ import annotations

import numpy as np

from mien.expression.calibration import reliability


def classification_metrics(labels: np.ndarray, probs: np.ndarray, classes: tuple[str, ...],
                           present: tuple[str, ...] | None = None) -> dict:
    """Metrics for integer `labels` (n,) against predicted `probs` (n, k) over `classes`.

    `present` restricts the per-class table and macro averages to the classes that occur in the
    data (the model may still predict the others; such predictions count as errors).
    """
    labels = np.asarray(labels)
    predicted = probs.argmax(1)
    k = len(classes)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    present = present or tuple(c for i, c in enumerate(classes) if (labels == i).any())
    per_class = {}
    for name in present:
        i = classes.index(name)
        tp = confusion[i, i]
        support = int(confusion[i].sum())
        predicted_as = int(confusion[:, i].sum())
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": support}
    calib = reliability(probs, labels)
    return {
        "n": int(len(labels)),
        "accuracy": float((predicted == labels).mean()) if len(labels) else float("nan"),
        "macro_f1": float(np.mean([m["f1"] for m in per_class.values()])) if per_class else float("nan"),
        "balanced_accuracy": float(np.mean([m["recall"] for m in per_class.values()])) if per_class else float("nan"),
        "per_class": per_class,
        "classes": list(classes),
        "classes_present": list(present),
        "confusion": confusion.tolist(),
        "ece": calib["ece"],
        "reliability": calib["bins"],
    }
