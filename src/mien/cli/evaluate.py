"""`mien eval`, `mien eval-aus` and `mien fairness`: accuracy against labels, per class, per AU, per group."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mien.cli.common import (EXIT_FAILED_INPUTS, EXIT_OK, EXIT_USAGE, PRIOR_HELP, app, check_choice, console,
                             errors, require_extra)
from mien.expression.classes import PRIORS


@app.command("eval")
def eval_command(
    dataset: str = typer.Argument(..., help="ferplus-test-majority (FER+ authors' protocol), ferplus-test (all faces), ferplus-valid[-majority], rafdb-test (RAF-DB basic, 7 classes), rafdb-valid, "
                                 "affectnet8-valid, or a folder DIR/<class>/*.jpg|png."),
    crops: Optional[bool] = typer.Option(None, "--crops/--detect", help="Images are face crops (default for built-in sets) or need face detection (default for folders)."),
    datasets: Path = typer.Option(Path("../shared/datasets"), envvar="MIEN_DATASETS", help="Folder of the built-in datasets."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for eval.json, confusion.png, reliability.png (default mien-eval/NAME)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout instead of tables."),
    limit: Optional[int] = typer.Option(None, help="Evaluate only the first N images (quick checks)."),
    model: Optional[Path] = typer.Option(None, help="Another expression ONNX file to evaluate."),
    prior: str = typer.Option("natural", help=PRIOR_HELP),
) -> None:
    """Measure the expression model on labelled faces.

    Accuracy, macro-F1, per-class precision/recall, confusion matrix, ECE and speed."""
    import json

    from mien.expression.classes import EXPRESSIONS
    from mien.expression.classifier import ExpressionClassifier
    from mien.expression.evaluate import evaluate
    from mien.report.plots import confusion_png, reliability_png
    from mien.datasets.expressions import BUILTIN, read_builtin, read_class_folders

    check_choice("--prior", prior, PRIORS)
    notes = []
    if dataset in BUILTIN:
        try:
            labelled = read_builtin(dataset, datasets)
        except FileNotFoundError as error:
            errors.print(f"error: {error} (set --datasets or MIEN_DATASETS)", soft_wrap=True)
            raise typer.Exit(EXIT_USAGE)
        crops = True if crops is None else crops
    elif Path(dataset).is_dir():
        labelled, skipped = read_class_folders(Path(dataset))
        notes += [f"folder {name!r} is not an expression class; skipped" for name in skipped]
        crops = False if crops is None else crops
    else:
        errors.print(f"error: {dataset}: not a built-in dataset ({', '.join(BUILTIN)}) or a folder", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    missing = [c for c in EXPRESSIONS if c not in labelled.classes_present]
    if missing:
        notes.append(f"classes absent from {labelled.name}, dropped from the metrics: {', '.join(missing)}")
    if not len(labelled):
        errors.print(f"error: {dataset}: no labelled images found", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    paths, labels = labelled.paths[:limit], labelled.labels[:limit]
    report = evaluate(labelled.name, paths, labels, labelled.classes_present, crops,
                      ExpressionClassifier(model, prior=prior), progress=not as_json)
    report["notes"] = notes
    out_dir = out_dir or Path("mien-eval") / labelled.name
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    if report["evaluated"]:
        confusion_png(report, out_dir / "confusion.png")
        reliability_png(report, out_dir / "reliability.png")
    for line in notes + report["errors"]:
        errors.print(f"note: {line}" if line in notes else f"error: {line}", soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        _print_eval(report, out_dir)
    raise typer.Exit(EXIT_FAILED_INPUTS if report["errors"] else EXIT_OK)

@app.command("eval-aus")
def eval_aus(
    folder: Path = typer.Argument(..., help="A folder with labels.csv (file, aus: e.g. 1+4+L12+25, null = not coded) "
                                            "and images/, as RAF-CE's train/ and valid/."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for aus.json and aus.png "
                                                                     "(default mien-eval/aus-FOLDERNAME)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout instead of a table."),
) -> None:
    """Measure action units against FACS coders.

    Per AU: positives, AUROC, F1 at the shipped threshold and the best-F1 threshold."""
    import json

    from mien.expression.au_eval import au_bars_png, evaluate_folder

    if not (folder / "labels.csv").is_file():
        errors.print(f"error: {folder}: no labels.csv (see mien eval-aus --help)", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_USAGE)
    report = evaluate_folder(folder, progress=not as_json)
    out_dir = out_dir or Path("mien-eval") / f"aus-{folder.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "aus.json").write_text(json.dumps(report, indent=2))
    au_bars_png(report, out_dir / "aus.png")
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    table = Table(title=f"{folder}: {report['faces']} coded faces with a mesh; AUxx_p (learned occurrence)")
    for col in ("AU", "positives", "AUROC", "F1 at threshold", "best threshold", "best F1"):
        table.add_column(col, justify="right")
    for au, e in report["per_au"].items():
        if "auroc" in e:
            table.add_row(au, str(e["positives"]), f"{e['auroc']:.3f}", f"{e['f1']:.3f} (>= {e['threshold']:g})",
                          f"{e['best_threshold']:.3f}", f"{e['best_f1']:.3f}")
    console.print(table)
    console.print(f"AUxx_p (learned occurrence), mean over {len(report['aus_counted'])} AUs with >= "
                  f"{report['min_positives']} positives: AUROC {report['mean_auroc']}, F1 {report['mean_f1']}; "
                  f"AUxx (rule-based estimates, >= 0.3): AUROC {report['estimates']['mean_auroc']}, "
                  f"F1 {report['estimates']['mean_f1']}", soft_wrap=True, highlight=False)
    compound = report.get("compound")
    if compound:
        console.print(f"compound expressions ({compound['faces']} faces): both components in mien's top two "
                      f"{compound['both_components_top2']}, one {compound['one_component_top2']}; expression_blend "
                      f"exactly right {compound['blend_exact']['accuracy']} (blend threshold "
                      f"{compound['blend_exact']['threshold']}); votes: mean KL {compound['votes']['mean_kl']} "
                      f"(uniform {compound['votes']['mean_kl_uniform']}), correlation "
                      f"{compound['votes']['mean_correlation']}", soft_wrap=True, highlight=False)
    console.print(f"wrote {out_dir / 'aus.json'}, {out_dir / 'aus.png'}", soft_wrap=True, highlight=False)


@app.command("eval-rules")
def eval_rules(
    folder: Path = typer.Argument(..., help="A folder with labels.csv (file, compound: e.g. 'happily surprised') and "
                                            "images/ of face crops, as RAF-CE's train/ and valid/."),
    rules: str = typer.Option("compound", "--rules", help="A rules file whose rules are named after the compounds "
                                                          "(happily_surprised...), or a built-in set: compound, "
                                                          "compound-facs."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for rules.json (default "
                                                                     "mien-eval/rules-FOLDERNAME)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout instead of a table."),
    limit: Optional[int] = typer.Option(None, help="Score only the first N faces (quick checks)."),
) -> None:
    """Score compound-expression rules on labelled faces.

    Top-1/top-3 accuracy, recall, confusion; beside the compound column, expression_blend and the majority class."""
    import json

    from mien.cli.common import load_rules_or_exit
    from mien.expression.au_eval import VOTE_CLASSES, measure_faces, read_coded
    from mien.expression.compound_eval import check_rules, column_report, column_summary, compound_report, rules_report
    from mien.expression.openset import load_thresholds
    from mien.expression.rules import RulesError

    if not (folder / "labels.csv").is_file():
        errors.print(f"error: {folder}: no labels.csv (see mien eval-rules --help)", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_USAGE)
    rule_set = load_rules_or_exit(rules)
    coded = read_coded(folder, coded_only=False)
    paths, labels, votes = coded.paths[:limit], coded.compounds[:limit], coded.votes[:limit]
    try:
        check_rules(rule_set, labels)  # before any work
    except RulesError as exc:
        errors.print(f"mien: {exc}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    faces = measure_faces(paths, progress=not as_json)
    au_probs = faces.au_probabilities()
    report = rules_report(rule_set, faces.probabilities, au_probs, labels)
    blends = compound_report(faces.probabilities, labels, votes, VOTE_CLASSES, load_thresholds("natural")["blend_min"])
    column = column_report(faces.probabilities, faces.logits, au_probs, labels)  # the default compound column
    report.update(folder=str(folder), expression_blend=blends["blend_exact"],
                  both_components_top2=blends["both_components_top2"], compound_column=column)
    out_dir = out_dir or Path("mien-eval") / f"rules-{folder.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rules.json").write_text(json.dumps(report, indent=2))
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    table = Table(title=f"{folder}: {report['faces']} faces with a mesh; rules {report['rules']}")
    for col in ("compound", "faces", "recall", "most often read as"):
        table.add_column(col, justify="right" if col in ("faces", "recall") else "left")
    for compound, recall in report["recall"].items():
        read_as = max(report["confusion"][compound].items(), key=lambda kv: kv[1])[0]
        table.add_row(compound, str(sum(report["confusion"][compound].values())), f"{recall:.3f}", read_as)
    console.print(table)
    console.print(f"top-1 {report['top1']}, top-3 {report['top3']}, mean recall {report['mean_recall']}; "
                  f"majority class ({report['majority']['compound']}) {report['majority']['top1']}; expression_blend "
                  f"exactly right {report['expression_blend']['accuracy']}, both components in mien's top two "
                  f"{report['both_components_top2']}", soft_wrap=True, highlight=False)
    if column["faces"]:
        console.print(column_summary(column), soft_wrap=True, highlight=False)
    console.print(f"wrote {out_dir / 'rules.json'}", soft_wrap=True, highlight=False)


def _print_eval(report: dict, out_dir: Path) -> None:
    speed = report["classifier"]
    console.print(f"[bold]{report['dataset']}[/bold] ({report['mode']}): {report['evaluated']} of {report['images']} "
                  f"images evaluated, {report['no_face']} without a face, {len(report['errors'])} unreadable", soft_wrap=True)
    console.print(f"accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  "
                  f"mean class accuracy {report['balanced_accuracy']:.4f}  ECE {report['ece']:.4f}", soft_wrap=True)
    console.print(f"speed: {report['images_per_s']:.1f} images/s end to end; classifier {speed['faces_per_s']:.0f} "
                  f"faces/s batched ({speed['batch']}), {speed['latency_ms']:.2f} ms for one face", soft_wrap=True)
    per_class = Table(title="per class")
    for col in ("class", "precision", "recall", "F1", "support"):
        per_class.add_column(col, justify="right")
    for name, m in report["per_class"].items():
        per_class.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    console.print(per_class)
    confusion = Table(title="confusion (rows true, columns predicted)")
    confusion.add_column("true \\ pred")
    for name in report["classes"]:
        confusion.add_column(name[:8], justify="right")
    for name in report["classes_present"]:
        row = report["confusion"][report["classes"].index(name)]
        confusion.add_row(name, *map(str, row))
    console.print(confusion)
    console.print(f"wrote {out_dir / 'eval.json'}, confusion.png, reliability.png", soft_wrap=True)

@app.command()
def fairness(
    data: Path = typer.Option(Path("../shared/datasets"), help="Folder with utkface/ (and affectnet8/valid/ for the proxy)."),
    out: Path = typer.Option(Path("benchmarks/fairness_results.json"), "-o", "--out", help="Results JSON."),
    cache: Optional[Path] = typer.Option(Path(".cache/fairness"), help="Keep per-image predictions here (reruns are quick)."),
    write_cards: bool = typer.Option(False, "--write-cards", help="Put the per-group tables into every model card "
                                                                  "(package data) and regenerate docs/cards/*.md."),
    docs: Path = typer.Option(Path("docs/cards"), help="Where --write-cards writes the Markdown cards."),
) -> None:
    """Per-group evaluation on UTKFace (age, gender, race).

    Detection, mesh, attribute errors and expression distributions per age band, gender and race label; per-group
    tables for the model cards."""
    import json as json_module

    require_extra("stats", "scipy")
    from mien.fairness import card_sections, evaluate

    if not (data / "utkface").exists():
        errors.print(f"{data / 'utkface'}: not found (the UTKFace subsample is needed)", soft_wrap=True)
        raise typer.Exit(EXIT_USAGE)
    results = evaluate(data, cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json_module.dumps(results, indent=1) + "\n")
    for gap in results["gaps"]:
        console.print(f"{gap['measure']} by {gap['grouping']}: worst {gap['worst_group']} {gap['worst']:.3g}, "
                      f"best {gap['best_group']} {gap['best']:.3g}", highlight=False, soft_wrap=True)
    console.print(f"wrote {out}", soft_wrap=True)
    if write_cards:
        from mien.report.card import write_cards

        command = "mien fairness --write-cards"
        for path in write_cards(card_sections(results, command), docs):
            console.print(f"wrote {path}", soft_wrap=True)
