"""Disaggregated evaluation: how well each model works per age band, gender and race label.

`mien fairness` runs the pipeline (with attributes) on the UTKFace subsample, whose file names
carry age, gender and race labels as given by the dataset (self-reported or annotated; not
mien's categories), and reports per group: face detection rate, mesh (landmark) success, apparent
age error and interval coverage, gender-presentation accuracy, and the distribution of predicted
expressions. UTKFace has no expression labels, so expression *distributions* are compared: each
group against all other faces with a chi-square test (Holm-corrected within each grouping).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mien.expression.classes import EXPRESSIONS
from mien.face.attributes import interval_holds
from mien.io.table import json_records

AGE_BANDS = ((0, 2, "0-2"), (3, 9, "3-9"), (10, 19, "10-19"), (20, 29, "20-29"), (30, 39, "30-39"),
             (40, 49, "40-49"), (50, 59, "50-59"), (60, 69, "60-69"), (70, 200, "70+"))
GROUPINGS = ("age_band", "gender", "race")
MIN_GROUP = 30  # groups smaller than this are listed but left out of the stated gaps


def age_band(age: float) -> str | None:
    """The band ("20-29", "70+", ...) of an age in years; None for a missing or negative age."""
    if age is None or not np.isfinite(age) or age < 0:
        return None
    years = int(np.floor(age))
    return next(name for low, high, name in AGE_BANDS if low <= years <= high)


def add_groups(table: pd.DataFrame) -> pd.DataFrame:
    """Copy of a table with `age`, `gender`, `race` labels plus an `age_band` column."""
    out = table.copy()
    out["age_band"] = [age_band(a) for a in out["age"]]
    return out


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    p = np.asarray(p_values, float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def expression_shift(expressions: pd.Series, in_group: pd.Series) -> dict:
    """Chi-square test of the predicted-expression distribution in a group against everyone else:
    p-value, Cramér's V and the expression whose share differs most (group share - others)."""
    table = pd.crosstab(in_group, expressions).reindex(columns=list(EXPRESSIONS), fill_value=0)
    table = table.loc[:, table.sum(0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return {"p": float("nan"), "cramers_v": float("nan"), "largest_difference": None}
    from scipy.stats import chi2_contingency  # the `stats` extra (`mien fairness` checks for it)

    chi2, p, _, _ = chi2_contingency(table.to_numpy())
    n = table.to_numpy().sum()
    v = float(np.sqrt(chi2 / (n * (min(table.shape) - 1))))
    shares = table.div(table.sum(1), axis=0)
    diff = shares.loc[True] - shares.loc[False]
    top = diff.abs().idxmax()
    return {"p": float(p), "cramers_v": round(v, 4), "largest_difference": {"expression": top,
            "group_share": round(float(shares.loc[True, top]), 4), "others_share": round(float(shares.loc[False, top]), 4)}}


def group_metrics(table: pd.DataFrame, grouping: str) -> pd.DataFrame:
    """Per group of `grouping` (one of `GROUPINGS`): the measures described in the module docs.

    `table` has one row per image with columns age, gender, race, age_band, detected, meshed,
    expression (predicted, None without a mesh), expression_status, apparent_age,
    apparent_age_low, apparent_age_high, p_female and attribute_eval (rows held out from the
    attribute template, on which attribute errors are measured).
    """
    rows = []
    meshed = table[table["meshed"]]
    tests = {}
    for group, part in table.groupby(grouping, sort=False):
        held = part[part["meshed"] & part["attribute_eval"]]
        in_group = meshed[grouping] == group
        tests[group] = expression_shift(meshed["expression"], in_group) if in_group.any() else None
        shown = part.loc[part["meshed"], "expression"].value_counts(normalize=True)
        rows.append({
            "grouping": grouping, "group": group, "faces": int(len(part)),
            "detection_rate": float(part["detected"].mean()),
            "mesh_rate": float(part["meshed"].mean()),
            "mesh_given_detection": float(part["meshed"].sum() / max(part["detected"].sum(), 1)),
            "attribute_faces": int(len(held)),
            "age_mae": float((held["apparent_age"] - held["age"]).abs().mean()) if len(held) else np.nan,
            "age_bias": float((held["apparent_age"] - held["age"]).mean()) if len(held) else np.nan,
            "age_interval_coverage": float(interval_holds(held["age"], held["apparent_age_low"],
                                                          held["apparent_age_high"]).mean())
            if len(held) else np.nan,
            "gender_accuracy": float(((held["p_female"] >= 0.5) == (held["gender"] == "female")).mean())
            if len(held) else np.nan,
            "uncertain_or_unknown": float(part.loc[part["meshed"], "expression_status"].isin(["uncertain", "unknown"]).mean())
            if part["meshed"].any() else np.nan,
            **{f"share_{e}": float(shown.get(e, 0.0)) for e in EXPRESSIONS},
        })
    out = pd.DataFrame(rows)
    order = [name for _, _, name in AGE_BANDS] if grouping == "age_band" else sorted(out["group"])
    out = out.set_index("group").loc[[g for g in order if g in set(out["group"])]].reset_index()
    p_values = [tests[g]["p"] if tests[g] else np.nan for g in out["group"]]
    finite = [i for i, p in enumerate(p_values) if np.isfinite(p)]
    adjusted = np.full(len(out), np.nan)
    adjusted[finite] = holm([p_values[i] for i in finite])
    out["expression_shift_p_holm"] = adjusted
    out["expression_shift_cramers_v"] = [tests[g]["cramers_v"] if tests[g] else np.nan for g in out["group"]]
    out["expression_shift_largest"] = [_describe(tests[g]) for g in out["group"]]
    return out


def _describe(test: dict | None) -> str | None:
    d = test["largest_difference"] if test else None
    return f"{d['expression']} {d['group_share']:.0%} vs {d['others_share']:.0%}" if d else None


def largest_gaps(frames: dict[str, pd.DataFrame]) -> list[dict]:
    """For each measure, the best and worst group (groups of at least `MIN_GROUP` faces) per grouping."""
    measures = {"detection_rate": True, "mesh_rate": True, "age_mae": False, "gender_accuracy": True,
                "age_interval_coverage": True}
    gaps = []
    for grouping, frame in frames.items():
        for measure, higher_is_better in measures.items():
            size = "attribute_faces" if measure.startswith(("age", "gender")) else "faces"
            usable = frame[(frame[size] >= MIN_GROUP) & frame[measure].notna()]
            if len(usable) < 2:
                continue
            best = usable.loc[usable[measure].idxmax() if higher_is_better else usable[measure].idxmin()]
            worst = usable.loc[usable[measure].idxmin() if higher_is_better else usable[measure].idxmax()]
            gaps.append({"grouping": grouping, "measure": measure, "best_group": best["group"],
                         "best": round(float(best[measure]), 4), "worst_group": worst["group"],
                         "worst": round(float(worst[measure]), 4),
                         "gap": round(abs(float(best[measure]) - float(worst[measure])), 4)})
    return gaps


def collect_utkface(folder, progress: bool = True) -> pd.DataFrame:
    """Run the pipeline with attributes on every UTKFace image: one row per image with its labels,
    whether a face was detected and meshed, and the most confident face's predictions."""
    from rich.progress import track

    from mien.analyzer import Analyzer, AnalyzerOptions
    from mien.io.images import load_image
    from mien.datasets.utkface import index

    table = index(folder)
    records = []
    with Analyzer(AnalyzerOptions(mode="auto", require_mesh=False, attributes=True)) as analyzer:
        paths = track(table["path"], description="UTKFace") if progress else table["path"]
        for path in paths:
            faces = analyzer.analyze_loaded(load_image(path))
            record = {"detected": bool(len(faces)), "meshed": False, "expression": None, "expression_status": None,
                      "apparent_age": np.nan, "apparent_age_low": np.nan, "apparent_age_high": np.nan,
                      "p_female": np.nan}
            best = faces.main_face()
            if best is not None and faces.has_mesh[best]:
                record.update(meshed=True, expression=faces.top_expression[best],
                              expression_status=faces.status[best], apparent_age=float(faces.age[best, 0]),
                              apparent_age_low=float(faces.age[best, 1]), apparent_age_high=float(faces.age[best, 2]),
                              p_female=float(faces.female[best]))
            records.append(record)
    out = pd.concat([table.reset_index(drop=True), pd.DataFrame(records)], axis=1)
    out["attribute_eval"] = out["split"] != "train"  # the chip template was fitted on train
    return add_groups(out)


def proxy_expression_accuracy(folder, progress: bool = True) -> pd.DataFrame:
    """Expression accuracy on AffectNet-8 valid per *inferred* group: apparent age band and gender
    presentation as the attribute networks read them (no dataset carries expression labels and
    group labels together; the attribute networks' own errors mix in). Balanced prior, as
    AffectNet-8 valid is reported elsewhere."""
    from pathlib import Path

    from rich.progress import track

    from mien.analyzer import Analyzer, AnalyzerOptions
    from mien.io.images import load_image

    files = sorted((c.name, p) for c in Path(folder).iterdir() if c.is_dir() for p in c.glob("*.jpg"))
    records = []
    with Analyzer(AnalyzerOptions(mode="fast", attributes=True, expression_prior="balanced")) as analyzer:
        for label, path in (track(files, description="AffectNet-8 valid") if progress else files):
            faces = analyzer.analyze_loaded(load_image(path))
            best = faces.main_face()
            if best is None or not faces.has_mesh[best]:
                continue
            records.append({"label": label, "predicted": faces.top_expression[best],
                            "apparent_age": float(faces.age[best, 0]), "p_female": float(faces.female[best])})
    table = pd.DataFrame(records)
    table["age_band"] = [age_band(a) for a in table["apparent_age"]]
    table["gender_presentation"] = np.where(table["p_female"] >= 0.5, "female", "male")
    table["correct"] = table["label"] == table["predicted"]
    rows = []
    bands = [name for _, _, name in AGE_BANDS]
    for grouping in ("age_band", "gender_presentation"):
        for group, part in sorted(table.groupby(grouping), key=lambda gp: bands.index(gp[0]) if gp[0] in bands else 0):
            recalls = part.groupby("label")["correct"].mean()
            rows.append({"grouping": f"inferred {grouping}", "group": group, "faces": int(len(part)),
                         "accuracy": float(part["correct"].mean()), "mean_class_recall": float(recalls.mean()),
                         "classes_present": int(len(recalls))})
    return pd.DataFrame(rows)


# Which per-group columns each model card shows (the measure each model is responsible for).
CARD_COLUMNS = {
    "detector": {"faces": "faces", "detection_rate": "detected"},
    "mesh": {"faces": "faces", "mesh_rate": "meshed", "mesh_given_detection": "meshed if detected"},
    "blendshapes": {"faces": "faces", "mesh_rate": "blendshapes available"},
    "expression": {"faces": "faces", "share_neutral": "neutral", "share_happy": "happy", "share_sad": "sad",
                   "uncertain_or_unknown": "uncertain/unknown", "expression_shift_p_holm": "shift p (Holm)",
                   "expression_shift_cramers_v": "Cramér's V", "expression_shift_largest": "largest difference"},
    "age": {"attribute_faces": "faces", "age_mae": "MAE (years)", "age_bias": "mean error (years)",
            "age_interval_coverage": "80% interval holds true age"},
    "gender": {"attribute_faces": "faces", "gender_accuracy": "accuracy"},
}
CARD_GAPS = {"detector": ("detection_rate",), "mesh": ("mesh_rate",), "blendshapes": ("mesh_rate",),
             "expression": (), "age": ("age_mae", "age_interval_coverage"), "gender": ("gender_accuracy",)}


def evaluate(data_dir, cache_dir=None, progress: bool = True) -> dict:
    """The whole disaggregated evaluation as JSON-ready data (see `mien fairness`)."""
    from pathlib import Path

    data_dir = Path(data_dir)
    cache = Path(cache_dir) if cache_dir else None
    utk_cache = cache / "utkface_fairness.parquet" if cache else None
    if utk_cache is not None and utk_cache.exists():
        table = pd.read_parquet(utk_cache)
    else:
        table = collect_utkface(data_dir / "utkface", progress)
        if utk_cache is not None:
            utk_cache.parent.mkdir(parents=True, exist_ok=True)
            table.to_parquet(utk_cache, index=False)
    from mien.face.attributes import age_interval

    # Intervals from the shipped calibration (cached predictions stay valid if it is refitted).
    table["apparent_age_low"], table["apparent_age_high"] = age_interval(table["apparent_age"].to_numpy())
    frames = {g: group_metrics(table, g) for g in GROUPINGS}
    everyone = json_records(group_metrics(table.assign(everyone="all"), "everyone"))[0]
    results = {
        "dataset": f"UTKFace subsample ({len(table)} faces; attribute errors on the {int(table['attribute_eval'].sum())} "
                   "valid+test faces not used to fit the chip template)",
        "min_group": MIN_GROUP,
        "overall": {k: everyone[k] for k in ("faces", "detection_rate", "mesh_rate", "age_mae", "gender_accuracy")},
        "groups": {g: json_records(f) for g, f in frames.items()},
        "gaps": largest_gaps(frames),
    }
    affectnet = data_dir / "affectnet8" / "valid"
    if affectnet.exists():
        proxy_cache = cache / "affectnet_proxy.parquet" if cache else None
        if proxy_cache is not None and proxy_cache.exists():
            proxy = pd.read_parquet(proxy_cache)
        else:
            proxy = proxy_expression_accuracy(affectnet, progress)
            if proxy_cache is not None:
                proxy.to_parquet(proxy_cache, index=False)
        results["proxy_expression_accuracy"] = json_records(proxy)
    return results


def card_sections(results: dict, command: str) -> dict[str, dict]:
    """The `fairness` section of each model card, from `evaluate`'s results."""
    sections = {}
    for card, columns in CARD_COLUMNS.items():
        wanted = CARD_GAPS[card]
        section = {"command": command, "dataset": results["dataset"], "min_group": results["min_group"],
                   "columns": columns,
                   "groups": {g: [{"group": r["group"], **{c: r.get(c) for c in columns}} for r in rows]
                              for g, rows in results["groups"].items()},
                   "gaps": [g for g in results["gaps"] if g["measure"] in wanted]}
        if card == "expression":
            section["notes"] = [
                "UTKFace has no expression labels: the table compares what the model *predicts* per group "
                "(each group against all other faces, chi-square test, Holm-corrected per grouping). A significant "
                "shift can come from the photos themselves (who was smiling when UTKFace's pictures were taken) or "
                "from the model; without labels the two cannot be told apart here. Cramér's V says how large a "
                "shift is (under 0.1 is small)."]
            section["proxy"] = results.get("proxy_expression_accuracy", [])
        sections[card] = section
    return sections
