"""Compound expressions scored against RAF-CE-style labels ("happily surprised", 14 classes) and the 6-emotion
vote distributions: is mien's `expression_blend` the labelled compound, are both (or one) of its
components mien's two most probable classes, and how close are mien's probabilities to the votes."""

from __future__ import annotations

import numpy as np

from mien.expression.classes import EXPRESSIONS
from mien.expression.openset import _ADJECTIVE, _ADVERB, blend_name, blends

_FROM_ADVERB = {word: name for name, word in _ADVERB.items()}
_FROM_ADJECTIVE = {word: name for name, word in _ADJECTIVE.items()}


def compound_parts(label: str) -> tuple[str, str] | None:
    """("happy", "surprise") for "happily surprised"; None for anything else."""
    words = label.strip().lower().split()
    if len(words) != 2 or words[0] not in _FROM_ADVERB or words[1] not in _FROM_ADJECTIVE:
        return None
    return _FROM_ADVERB[words[0]], _FROM_ADJECTIVE[words[1]]


def compound_report(probs: np.ndarray, labels: list[str], votes: np.ndarray, vote_classes: tuple[str, ...],
                    blend_min: float) -> dict:
    """Scores of (n, 8) probabilities (NaN rows: no face) against compound labels and (n, k) votes over
    `vote_classes`. Blend accuracy at `blend_min` (the shipped threshold) and at the best one on these faces."""
    probs = np.asarray(probs, np.float64)
    parts = [compound_parts(label) for label in labels]
    ok = ~np.isnan(probs).any(1) & np.array([p is not None for p in parts])
    p, truth = probs[ok], [parts[i] for i in np.flatnonzero(ok)]
    top2 = np.argsort(-p, 1)[:, :2]
    both = np.mean([{EXPRESSIONS[a], EXPRESSIONS[b]} == set(t) for (a, b), t in zip(top2, truth)])
    one = np.mean([bool({EXPRESSIONS[a], EXPRESSIONS[b]} & set(t)) for (a, b), t in zip(top2, truth)])
    wanted = [blend_name(*t) for t in truth]

    def blend_accuracy(threshold: float) -> float:
        return float(np.mean([b == w for b, w in zip(blends(p, threshold), wanted)]))

    candidates = np.round(np.arange(0.02, 0.51, 0.02), 2)
    best = max(candidates, key=blend_accuracy)
    # Vote distributions: mien's probabilities over the voted classes, renormalised.
    columns = [EXPRESSIONS.index(c) for c in vote_classes]
    v = np.asarray(votes, np.float64)[ok]
    keep = ~np.isnan(v).any(1) & (v.sum(1) > 0)
    v = v[keep] / v[keep].sum(1, keepdims=True)
    q = p[keep][:, columns]
    q = q / np.maximum(q.sum(1, keepdims=True), 1e-12)
    kl = np.sum(np.where(v > 0, v * np.log(np.maximum(v, 1e-12) / np.maximum(q, 1e-6)), 0.0), 1)
    uniform = np.sum(np.where(v > 0, v * np.log(np.maximum(v, 1e-12) * len(columns)), 0.0), 1)
    correlation = [np.corrcoef(a, b)[0, 1] for a, b in zip(v, q) if a.std() > 0 and b.std() > 0]
    return {"faces": int(ok.sum()), "both_components_top2": round(float(both), 3),
            "one_component_top2": round(float(one), 3),
            "blend_exact": {"threshold": blend_min, "accuracy": round(blend_accuracy(blend_min), 3)},
            "blend_exact_best": {"threshold": float(best), "accuracy": round(blend_accuracy(best), 3)},
            "votes": {"faces": int(keep.sum()), "mean_kl": round(float(kl.mean()), 3),
                      "mean_kl_uniform": round(float(uniform.mean()), 3),
                      "mean_correlation": round(float(np.mean(correlation)), 3)}}


def rule_label(rule_name: str) -> str:
    """The compound label a rule scores: `happily_surprised` -> "happily surprised"."""
    return rule_name.replace("_", " ")


def check_rules(rules, labels: list[str]) -> list:
    """The rules of a `RuleSet` named after a compound among `labels`; `RulesError` when there is none, or when one
    reads a column other than `expr_<class>` and `AUxx_p` (what `rules_report` measures)."""
    from mien.expression.aus import AU_NAMES
    from mien.expression.rules import RulesError

    measured = {f"expr_{c}" for c in EXPRESSIONS} | {f"{au}_p" for au in AU_NAMES} | set(rules.columns)
    scored = [r for r in rules.rules if rule_label(r.name) in set(labels)]
    if not scored:
        raise RulesError(f"{rules.path}: no rule is named after a compound of these labels (e.g. happily_surprised)")
    for rule in scored:
        unknown = rule.columns_read() - measured
        if unknown:
            raise RulesError(f"{rules.path}: rule {rule.name!r} reads {sorted(unknown)[0]}, which eval-rules does not "
                             "measure (it reads expr_<class> and AUxx_p)")
    return scored


def rules_report(rules, probs: np.ndarray, au_probs: np.ndarray, labels: list[str]) -> dict:
    """How well a `RuleSet` names each face's compound: the rule reading highest is the guess.

    `probs` (n, 8) expression probabilities and `au_probs` (n, len(AU_NAMES)) AU occurrence probabilities (NaN rows:
    no face); `labels` the compound labels. Rules are matched to labels by name (`rule_label`); a face whose compound
    has no rule counts as missed. Top-1 and top-3 accuracy, recall per compound and their mean, the confusion
    (label -> guess -> faces) and the majority class's accuracy."""
    from mien.expression.aus import AU_NAMES

    scored = check_rules(rules, labels)
    columns = {f"expr_{c}": np.asarray(probs, np.float64)[:, k] for k, c in enumerate(EXPRESSIONS)}
    columns.update({f"{au}_p": np.asarray(au_probs, np.float64)[:, k] for k, au in enumerate(AU_NAMES)})
    ok = ~np.isnan(np.asarray(probs, np.float64)).any(1) & np.array([bool(label) for label in labels])
    values = rules.evaluate({k: v[ok] for k, v in columns.items()}, int(ok.sum()))
    names = [rule_label(r.name) for r in scored]
    scores = np.stack([values[r.column] for r in scored], 1)
    truth = [labels[i] for i in np.flatnonzero(ok)]
    order = np.argsort(-scores, 1, kind="stable")
    guesses = [names[k] for k in order[:, 0]]
    top3 = [{names[k] for k in row[:3]} for row in order]
    compounds = sorted(set(truth))
    recall = {c: round(float(np.mean([g == c for g, t in zip(guesses, truth) if t == c])), 3) for c in compounds}
    confusion = {c: {} for c in compounds}
    for g, t in zip(guesses, truth):
        confusion[t][g] = confusion[t].get(g, 0) + 1
    majority = max(compounds, key=truth.count)
    return {"rules": rules.path, "faces": len(truth), "faces_without_mesh": int((~ok).sum()),
            "top1": round(float(np.mean([g == t for g, t in zip(guesses, truth)])), 3),
            "top3": round(float(np.mean([t in s for s, t in zip(top3, truth)])), 3),
            "mean_recall": round(float(np.mean(list(recall.values()))), 3),
            "majority": {"compound": majority, "top1": round(truth.count(majority) / len(truth), 3)},
            "recall": recall, "confusion": confusion}


def ranking_scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Top-1, top-3 and mean per-class recall of probabilities (n, classes) against class indices `y`; a NaN row
    (no reading) counts as wrong."""
    missing = np.isnan(probs).any(1)
    order = np.argsort(-np.nan_to_num(probs, nan=-1.0), 1)
    top1 = (order[:, 0] == y) & ~missing
    recall = [float(np.mean(top1[y == k])) for k in np.unique(y)]
    return {"top1": round(float(top1.mean()), 3),
            "top3": round(float(((order[:, :3] == y[:, None]).any(1) & ~missing).mean()), 3),
            "mean_recall": round(float(np.mean(recall)), 3)}


def column_report(probs: np.ndarray, logits: np.ndarray, au_probs: np.ndarray, labels: list[str]) -> dict:
    """How well the default `compound` reading (`mien.expression.compound`) ranks each labelled face's compound, over
    the faces with a mesh: top-1, top-3 and mean recall of the 14 probabilities (a face that reads neutral counts as
    wrong), the share that reads neutral, the share the `compound` column names a compound at all (the gate, at the
    default share of compounds), and the share it names the right one."""
    from mien.expression.classes import COMPOUNDS
    from mien.expression.compound import named, read

    ok = ~np.isnan(np.asarray(probs, np.float64)).any(1) & np.isin(labels, COMPOUNDS)
    read_probs = read(np.asarray(logits)[ok], np.asarray(au_probs)[ok], np.asarray(probs)[ok])
    truth = np.array([COMPOUNDS.index(label) for label in np.asarray(labels)[ok]], int)
    if not len(truth):
        return {"faces": 0}
    names = np.array(named(read_probs)[0], object)
    return {"faces": int(ok.sum()), **ranking_scores(read_probs, truth),
            "read_neutral": round(float(np.isnan(read_probs).any(1).mean()), 3),
            "named": round(float(np.mean(names != None)), 3),  # noqa: E711 (elementwise)
            "named_right": round(float(np.mean(names == np.array(COMPOUNDS, object)[truth])), 3)}


def column_summary(column: dict) -> str:
    """One line of `column_report`'s figures, as `mien eval-rules` prints them."""
    return (f"the default compound column: top-1 {column['top1']}, top-3 {column['top3']}, mean recall "
            f"{column['mean_recall']} ({column['read_neutral']:.1%} read neutral); named a compound "
            f"{column['named']:.1%}, the right one {column['named_right']:.1%}")
