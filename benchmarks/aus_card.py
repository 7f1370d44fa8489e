"""Write the AU model card (package data `cards/aus.json` and `docs/cards/aus.md`) from the measured results:
`mien eval-aus` on RAF-CE valid (benchmarks/aus_rafce_valid/aus.json) and the per-group run
(benchmarks/aus_groups.py -> groups.json), plus the training record inside the shipped weights.

    python benchmarks/aus_card.py
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import numpy as np

from mien.expression.aus import AU_DESCRIPTIONS
from mien.models import resolve
from mien.models.sources import AU_OCCURRENCE
from mien.report.card import render_card

RESULTS = Path("benchmarks/aus_rafce_valid")


def per_au_table(report: dict) -> list[str]:
    lines = ["| AU | name | coded positives | AUROC `AUxx_p` | F1 at threshold | threshold | AUROC rule estimate `AUxx` |",
             "|---|---|---|---|---|---|---|"]
    rules = report["estimates"]["per_au"]
    for au, e in report["per_au"].items():
        if "auroc" not in e:
            continue
        counted = "" if au in report["aus_counted"] else " (fewer than 30: not in the means)"
        lines.append(f"| {au} | {AU_DESCRIPTIONS[au]} | {e['positives']}{counted} | {e['auroc']:.3f} | {e['f1']:.3f} | "
                     f"{e['threshold']:.3f} | {rules.get(au, {}).get('auroc', float('nan')):.3f} |")
    return lines


def group_lines(groups: dict) -> list[str]:
    lines = [f"Measured by `python benchmarks/aus_groups.py` on RAF-CE valid's coded faces, grouped by mien's own "
             "apparent-age and gender-presentation networks (estimates, not identities; see `mien card age`, "
             f"`mien card gender`). An AU counts in a group with at least {groups['min_per_group']} coded positives "
             "and negatives there; 'same AUs' compares every group of a grouping on the AUs all of them can score.", "",
             "| group | faces | AUs scored | mean AUROC | mean F1 | same AUs: AUROC | same AUs: F1 |", "|---|---|---|---|---|---|---|"]
    for name, g in groups["groups"].items():
        same = g.get("same_aus", {})
        lines.append(f"| {name} | {g['faces']} | {len(g['aus'])} | {g['mean_auroc'] or '-'} | {g['mean_f1'] or '-'} | "
                     f"{same.get('mean_auroc', '-')} | {same.get('mean_f1', '-')} |")
    return lines


def main() -> None:
    report = json.loads((RESULTS / "aus.json").read_text())
    groups = json.loads((RESULTS / "groups.json").read_text())
    with np.load(resolve("au_occurrence")) as data:
        record = json.loads(str(data["record"]))
    compound = report.get("compound", {})
    card = {
        "title": "AU occurrence probabilities (AUxx_p) and AU estimates (AUxx)",
        "model": {"file": AU_OCCURRENCE["file"], "sha256": AU_OCCURRENCE["sha256"],
                  "source": "fitted by mien (`python -m mien.train.aus --data ../shared/datasets/rafce`)",
                  "license": AU_OCCURRENCE["license"], "runtime": "numpy (no extra runtime)"},
        "what_it_does": (
            "For every face with a mesh: `AUxx` (20 AUs) are documented intensity *estimates*, functions of the "
            "blendshapes and of 3-D mesh geometry (see `mien.expression.aus`; `AU06_L`/`AU06_R`, `AU12_L`/`_R`, "
            "`AU14_L`/`_R`, `AU43_L`/`_R`, `AU45_L`/`_R` keep one-sided actions). `AUxx_p` is the probability that a "
            "FACS coder would mark the AU present, from a small network (" + record["network"] + ") over "
            + record["features"] + "; `AUxx_c` in OpenFace-format output is `AUxx_p` at the threshold below."),
        "intended_use": ["Which facial actions are visible in photos and video, for research, UX and media studies; "
                         "comparisons between conditions and over time (`df.mien.compare`, `df.mien.events`)."],
        "out_of_scope": [
            "FACS intensity coding (A-E) or certified FACS coding: `AUxx` are not intensities a coder would give, and "
            "`AUxx_p` was fitted to one coder team's present/absent codes on compound-expression photos.",
            "Clinical assessment (pain, facial palsy, depression) or any decision about an individual.",
            "Inferring what a person feels: AUs describe movements, not inner states."],
        "training_data": [
            f"RAF-CE train: {record['train_faces']} compound-expression faces with a mesh, AUs coded present/absent by a "
            "FACS coder (one-sided codes such as `L12` count as present); thresholds chosen on RAF-CE valid "
            f"({record['valid_faces']} faces). RAF-CE is deduplicated against RAF-DB test. Research and non-commercial "
            "use only.",
            "The expression network's logits and regional features are inputs, so the AU model is refitted whenever the expression model "
            f"changes (same command; {record['seconds']} s on this 2-core machine, features cached per expression model).",
            f"Seed {record['seed']}; shipped file {AU_OCCURRENCE['file']}, SHA-256 checked at load."],
        "metrics": [
            {"title": "Against FACS coding (RAF-CE valid)", "text": (
                f"over the {len(report['aus_counted'])} AUs with at least {report['min_positives']} coded positives: mean "
                f"AUROC **{report['mean_auroc']}**, mean F1 **{report['mean_f1']}** at the shipped thresholds (chosen on "
                f"this same split, so F1 is optimistic; AUROC does not depend on them). The rule-based estimates `AUxx` "
                f"reach AUROC {report['estimates']['mean_auroc']}, F1 {report['estimates']['mean_f1']} (at 0.3). "
                "Reproduce: `mien eval-aus ../shared/datasets/rafce/valid -o benchmarks/aus_rafce_valid`.\n\n"
                + "\n".join(per_au_table(report)))},
            {"title": "Compound expressions (RAF-CE valid, the expression model)", "text": (
                f"{compound.get('faces')} faces labelled with one of 14 compounds: both components among mien's two most "
                f"probable classes {compound.get('both_components_top2')}, at least one {compound.get('one_component_top2')}; "
                f"`expression_blend` names the labelled compound for {compound.get('blend_exact', {}).get('accuracy')} "
                f"(threshold {compound.get('blend_exact', {}).get('threshold')}). Against the 6-emotion vote distributions: "
                f"mean KL {compound.get('votes', {}).get('mean_kl')} (a uniform guess: "
                f"{compound.get('votes', {}).get('mean_kl_uniform')}), mean correlation "
                f"{compound.get('votes', {}).get('mean_correlation')}.")},
            {"title": "Speed", "text": "the whole AU stage (estimates, one-sided estimates, HOG, network) is about "
                                       "0.5 ms per face on this 2-core CPU (`tests/test_aus.py` asserts < 1 ms)."}],
        "per_group": group_lines(groups),
        "known_gaps": [
            "Coded by one team on one kind of photo (RAF-CE compound expressions, web images): spontaneous, subtle or "
            "video AUs (DISFA-style) are not measured here; a separate coded set is kept apart to check these figures.",
            "AUs with few coded positives (AU14, AU28, AU43) have wide uncertainty; AU45 (blink) cannot be told from "
            "AU43 in a still image.",
            "Apparent age 60 and over has too few coded faces (fewer than 15 positives of any AU) to score."],
    }
    path = Path(str(files("mien") / "data" / "cards" / "aus.json"))
    path.write_text(json.dumps(card, indent=1) + "\n")
    Path("docs/cards/aus.md").write_text(render_card("aus"))
    print(f"wrote {path} and docs/cards/aus.md")


if __name__ == "__main__":
    main()
