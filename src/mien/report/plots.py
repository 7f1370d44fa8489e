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


def png_bytes(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import io

    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def expression_bars(shares: dict[str, float], title: str = "expressions"):
    """Bar chart of the share of faces (or time) in each expression."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.6))
    names = list(shares)
    ax.bar(names, [shares[n] for n in names], color="#4c72b0")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    return fig


def timeline(track, expressions: list[str], title: str = ""):
    """Per-track expression probabilities (smoothed when present) and valence/arousal over time."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 4), sharex=True, height_ratios=(2, 1))
    t = track["time_s"].to_numpy()
    for name in expressions:
        column = f"expr_{name}_smooth" if f"expr_{name}_smooth" in track else f"expr_{name}"
        top.plot(t, track[column].to_numpy(), label=name, linewidth=1.2)
    top.set_ylim(0, 1)
    top.set_ylabel("probability")
    top.legend(ncol=4, fontsize=7, loc="upper right")
    top.set_title(title)
    for name in ("valence", "arousal"):
        column = f"{name}_smooth" if f"{name}_smooth" in track else name
        bottom.plot(t, track[column].to_numpy(), label=name, linewidth=1.2)
    bottom.set_ylim(-1, 1)
    bottom.axhline(0, color="grey", linewidth=0.5)
    bottom.set_xlabel("time (s)")
    bottom.legend(fontsize=7, loc="upper right")
    return fig


def lines(track, columns: list[str], title: str = "", ylabel: str = "value"):
    """Any columns of one track over time (smoothed copies when the table has them)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 2.8))
    t = track["time_s"].to_numpy()
    for name in columns:
        column = f"{name}_smooth" if f"{name}_smooth" in track else name
        ax.plot(t, track[column].to_numpy(), label=name, linewidth=1.2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.legend(ncol=4, fontsize=7, loc="upper right")
    ax.set_title(title)
    return fig


# Which facial region each AU acts on, for drawing AU intensities on the mesh.
AU_REGIONS = {"AU01": "brows", "AU02": "brows", "AU04": "brows", "AU05": "eyes", "AU06": "cheeks", "AU07": "eyes",
              "AU09": "nose", "AU10": "mouth", "AU12": "mouth", "AU14": "mouth", "AU15": "mouth", "AU17": "chin",
              "AU20": "mouth", "AU23": "mouth", "AU24": "mouth", "AU25": "mouth", "AU26": "chin", "AU28": "mouth",
              "AU43": "eyes", "AU45": "eyes"}


def aus_on_mesh(landmarks: np.ndarray, aus: np.ndarray, title: str = "AU intensity on the face"):
    """The 478-point mesh, each region's points coloured by its strongest AU estimate (0-1)."""
    from mien.expression.aus import AU_NAMES
    from mien.explain.regions import REGIONS

    plt = _pyplot()
    strength = {region: 0.0 for region in REGIONS}
    for name, value in zip(AU_NAMES, np.nan_to_num(aus)):
        region = AU_REGIONS[name]
        strength[region] = max(strength[region], float(value))
    colour = np.zeros(len(landmarks))
    for region, groups in REGIONS.items():
        for group in groups:
            colour[list(group)] = strength[region]
    fig, ax = plt.subplots(figsize=(3.2, 3.6))
    ax.scatter(landmarks[:, 0], -landmarks[:, 1], c="#cccccc", s=2)
    marked = colour > 0
    points = ax.scatter(landmarks[marked, 0], -landmarks[marked, 1], c=colour[marked], cmap="magma_r", vmin=0,
                        vmax=1, s=9)
    fig.colorbar(points, ax=ax, fraction=0.046, pad=0.04)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    return fig
