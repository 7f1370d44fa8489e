"""Evaluation figures: confusion matrix and reliability diagram (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_png(report: dict, path: Path) -> Path:
    """Row-normalised confusion matrix (true class rows) of an eval report, counts annotated."""
    plt = _pyplot()
    classes = report["classes"]
    rows = [classes.index(c) for c in report["classes_present"]]
    counts = np.asarray(report["confusion"])[rows]
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.8))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), report["classes_present"])
    for r in range(len(rows)):
        for c in range(len(classes)):
            ax.text(c, r, f"{share[r, c]:.2f}\n{counts[r, c]}", ha="center", va="center", fontsize=7,
                    color="white" if share[r, c] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{report['dataset']}: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def reliability_png(report: dict, path: Path) -> Path:
    """Reliability diagram: accuracy against confidence per bin, with the ECE in the title."""
    plt = _pyplot()
    bins = [b for b in report["reliability"] if b["count"]]
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar(centres, [b["accuracy"] for b in bins], width=1 / len(report["reliability"]), alpha=0.7,
           edgecolor="black", label="accuracy")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color="darkred", ms=3)
    ax.set_xlabel("confidence (top class)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"{report['dataset']}: ECE {report['ece']:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
