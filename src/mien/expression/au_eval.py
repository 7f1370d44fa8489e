"""Action units against FACS coders: per-AU AUROC, F1 and best threshold on a RAF-CE-style folder.

A folder holds `labels.csv` (`file`, `aus`: the AUs a coder marked present, joined by `+`, with an
optional side or intensity letter before the number (`L12` = left lip-corner puller), `null` when not
coded) and `images/`. Each face is measured as mien measures a face crop (mesh on the whole image,
`mien.expression.crop.mesh_face_image`); an AU counts as coded present when its number appears.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mien.expression.aus import AU_NAMES, estimate_aus
from mien.expression.openset import auroc

SHIPPED_THRESHOLD = 0.3  # `AUxx_c` / OpenFace-style presence of an estimate (see `mien.io.openface.to_openface`)
MIN_POSITIVES = 30  # AUs with fewer coded positives are listed but left out of the means


def parse_aus(text: str) -> set[int] | None:
    """AU numbers in a code like `1+4+L12+25` (None for `null` or empty: not coded)."""
    text = (text or "").strip()
    if not text or text.lower() == "null":
        return None
    return {int(m) for m in re.findall(r"(\d+)", text)}


@dataclass
class CodedSet:
    """Faces of a folder with their coded AUs (only the coded faces), compound labels and 6-emotion votes."""

    paths: list[Path]
    coded: list[set[int]]
    compounds: list[str] | None = None
    votes: np.ndarray | None = None  # (n, 6) in VOTE_CLASSES order

    def present(self, au: str) -> np.ndarray:
        number = int(au[2:])
        return np.array([number in c for c in self.coded])


VOTE_CLASSES = ("surprise", "fear", "disgust", "happy", "sad", "anger")  # RAF-CE's p_* columns (mien's names)
_VOTE_COLUMNS = ("p_surprise", "p_fear", "p_disgust", "p_happy", "p_sad", "p_anger")


def read_coded(folder: Path, coded_only: bool = True) -> CodedSet:
    """The faces of a RAF-CE-style folder: with `coded_only`, those a coder coded (AUs); else all of them
    (uncoded faces get an empty AU set; for the compound-label scores)."""
    paths, coded, compounds, votes = [], [], [], []
    with open(Path(folder) / "labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            aus = parse_aus(row.get("aus", ""))
            if aus is None and coded_only:
                continue
            paths.append(Path(folder) / "images" / row["file"])
            coded.append(aus or set())
            compounds.append(row.get("compound") or "")
            votes.append([float(row.get(c) or "nan") for c in _VOTE_COLUMNS])
    return CodedSet(paths, coded, compounds, np.asarray(votes, np.float32).reshape(-1, len(_VOTE_COLUMNS)))


@dataclass
class MeasuredFaces:
    """What the AU stage reads for each face of a face-crop folder (NaN / zeros where no mesh was found)."""

    blendshapes: np.ndarray  # (n, 52)
    landmarks: np.ndarray    # (n, 478, 3)
    found: np.ndarray        # (n,) bool
    aligned: np.ndarray      # (n, 112, 112, 3) uint8 aligned crops
    logits: np.ndarray       # (n, 8) expression network logits without the class prior
    probabilities: np.ndarray  # (n, 8) calibrated expression probabilities under the natural prior
    features: np.ndarray | None = None  # (n, D) the network's regional features (`ExpressionClassifier`), if any

    def au_probabilities(self) -> np.ndarray:
        """(n, 20) the learned AU occurrence probabilities of these faces (NaN rows without a mesh)."""
        from mien.expression.au_model import occurrence

        found = self.found
        out = np.full((len(found), len(AU_NAMES)), np.nan, np.float32)
        if found.any():
            out[found] = occurrence(self.blendshapes[found], self.landmarks[found], self.aligned[found],
                                    self.logits[found], features=None if self.features is None else self.features[found])
        return out


def measure_faces(paths: list[Path], progress: bool = True) -> MeasuredFaces:
    """The AU stage's inputs for face-crop images, measured as the pipeline measures a face (mesh on the
    whole crop, `mien.expression.crop.mesh_face_image`; aligned crop and expression logits as in
    `Analyzer.measure`)."""
    from rich.progress import track

    from mien.expression.calibration import softmax
    from mien.expression.classifier import ExpressionClassifier
    from mien.expression.crop import mesh_face_image
    from mien.face.align import ALIGN_MARGIN, ALIGN_SIZE, align_face
    from mien.face.mesh import MeshEstimator
    from mien.io.images import load_image

    n = len(paths)
    out = MeasuredFaces(np.full((n, 52), np.nan, np.float32), np.full((n, 478, 3), np.nan, np.float32),
                        np.zeros(n, bool), np.zeros((n, ALIGN_SIZE, ALIGN_SIZE, 3), np.uint8),
                        np.full((n, 8), np.nan, np.float32), np.full((n, 8), np.nan, np.float32))
    mesh, classifier = MeshEstimator(), ExpressionClassifier(spin=False)
    try:
        for i, path in enumerate(track(paths, description="faces", disable=not progress)):
            image, result = mesh_face_image(mesh, load_image(path).rgb)
            if not result.found[0]:
                continue
            out.blendshapes[i], out.landmarks[i], out.found[i] = result.blendshapes[0], result.landmarks[0], True
            out.aligned[i] = align_face(image, result.landmarks[0], ALIGN_SIZE, ALIGN_MARGIN)
            crop = classifier.crop(image, result.landmarks[0])[None]
            logits, features = classifier.logits_and_features(crop, result.blendshapes[:1])
            if features is not None:
                if out.features is None:
                    out.features = np.zeros((n, features.shape[1]), np.float32)
                out.features[i] = features[0]
            out.logits[i] = logits[0] - classifier.shift
            out.probabilities[i] = softmax(logits, classifier.temperature)[0]
    finally:
        mesh.close()
    return out


def f1_at(scores: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    predicted = scores >= threshold
    tp = float((predicted & truth).sum())
    return 2 * tp / max(float(predicted.sum() + truth.sum()), 1.0)


def best_threshold(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) maximising F1 over the observed score values."""
    best = (1.0, 0.0)
    for t in np.unique(np.round(scores, 3)):
        f1 = f1_at(scores, truth, float(t))
        if f1 > best[1]:
            best = (float(t), f1)
    return best


def au_report(scores: np.ndarray, coded: CodedSet, names: tuple[str, ...] = AU_NAMES,
              thresholds: dict[str, float] | None = None) -> dict:
    """Per-AU positives, AUROC, F1 at the shipped threshold (or `thresholds`), best-F1 threshold; means
    over the AUs with at least `MIN_POSITIVES` positives. `scores` (n, len(names)), NaN rows skipped."""
    ok = ~np.isnan(scores).any(1)
    per_au = {}
    for k, au in enumerate(names):
        truth = coded.present(au)[ok]
        s = scores[ok, k]
        positives = int(truth.sum())
        entry = {"positives": positives, "negatives": int((~truth).sum())}
        if 0 < positives < len(truth):
            threshold = (thresholds or {}).get(au, SHIPPED_THRESHOLD)
            t_best, f1_best = best_threshold(s, truth)
            entry.update(auroc=round(auroc(s[truth], s[~truth]), 3), threshold=threshold,
                         f1=round(f1_at(s, truth, threshold), 3), best_threshold=round(t_best, 3),
                         best_f1=round(f1_best, 3))
        per_au[au] = entry
    counted = [e for e in per_au.values() if e["positives"] >= MIN_POSITIVES and "auroc" in e]
    return {"faces": int(ok.sum()), "faces_without_mesh": int((~ok).sum()), "min_positives": MIN_POSITIVES,
            "aus_counted": [au for au, e in per_au.items() if e in counted],
            "mean_auroc": round(float(np.mean([e["auroc"] for e in counted])), 3) if counted else None,
            "mean_f1": round(float(np.mean([e["f1"] for e in counted])), 3) if counted else None,
            "per_au": per_au}


def evaluate_folder(folder: Path, progress: bool = True) -> dict:
    """The AU report on a RAF-CE-style folder: of the learned occurrence probabilities `AUxx_p` at their
    shipped thresholds (top level) and of the rule-based intensity estimates `AUxx` at 0.3 (`estimates`)."""
    from mien.expression.au_model import load_model

    coded = read_coded(folder)
    faces = measure_faces(coded.paths, progress)
    found = faces.found
    estimates = np.full((len(coded.paths), len(AU_NAMES)), np.nan, np.float32)
    if found.any():
        estimates[found] = estimate_aus(faces.blendshapes[found], faces.landmarks[found])
    probabilities = faces.au_probabilities()
    model = load_model()
    report = au_report(probabilities, coded, thresholds=model["threshold"])
    if coded.compounds and any(coded.compounds):
        from mien.expression.compound_eval import compound_report
        from mien.expression.openset import load_thresholds

        report["compound"] = compound_report(faces.probabilities, coded.compounds, coded.votes, VOTE_CLASSES,
                                             load_thresholds("natural")["blend_min"])
    report.update(folder=str(folder), coded_faces=len(coded.paths),
                  scores="AUxx_p (learned occurrence probabilities, thresholds chosen on RAF-CE valid)",
                  estimates={**au_report(estimates, coded), "scores": "AUxx (rule-based intensity estimates, >= 0.3)"})
    return report


def au_bars_png(report: dict, path: Path) -> Path:
    """Per-AU AUROC and F1 bars (AUs with positives), with the means."""
    from mien.report.plots import _pyplot

    plt = _pyplot()
    aus = [au for au, e in report["per_au"].items() if "auroc" in e]
    x = np.arange(len(aus))
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(aus) + 2), 3.6))
    ax.bar(x - 0.2, [report["per_au"][a]["auroc"] for a in aus], 0.4, label="AUROC")
    ax.bar(x + 0.2, [report["per_au"][a]["f1"] for a in aus], 0.4, label="F1 at threshold")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x, [f"{a}\n({report['per_au'][a]['positives']})" for a in aus], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title(f"AUs vs FACS coding: mean AUROC {report['mean_auroc']}, mean F1 {report['mean_f1']} "
                 f"(AUs with >= {report['min_positives']} positives)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
