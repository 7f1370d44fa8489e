"""Per-person neutral calibration: a face that looks sad or angry at rest should not read sad or angry.

From a person's neutral photo(s) mien learns how that face reads at rest, relative to how neutral faces
read in general, and removes half of that difference from every other reading of the same person:

    log p_cal(c) = log p(c) - STRENGTH * (r(c) - n(c))      for every class c but neutral, then renormalised

where r is the mean log-probability of the person's neutral rows and n the population's (`POPULATION_NEUTRAL`:
the mean over the neutral photos of the shared KDEF's 34 people, three views, each read by the same training
recipe run without that person's fold of posers: how the network reads the rest of people it never saw; the
shipped network itself trained on all 34). The neutral class is left alone: a person
whose rest reads strongly neutral is not made to read less neutral. AU probabilities move the same way in
log-odds, `logit AUxx_p_cal = logit AUxx_p - STRENGTH * (logit AUxx_p at rest - the population's)`
(`POPULATION_AU_NEUTRAL`, from the same photos); AU intensities become relative to the person's rest
(`AUxx_cal = max(0, AUxx - AUxx at rest)`), and valence/arousal are derived again from the calibrated readings,
and so is the open-set status. Custom expressions (`mien.expression.rules`) are read again from the calibrated
columns (`custom_<name>_cal`). Calibrated columns sit beside the uncalibrated ones (`expr_<class>_cal`,
`expression_cal`, `expression_status_cal`, `AUxx_cal`, `AUxx_p_cal`, `custom_<name>_cal`, `valence_cal`,
`arousal_cal`; `person` names whose rest was used).

Photos: the rest is the person's neutral photo(s) (`calibrate`). Video: each track's rows in a time window, or
its most neutral two seconds (`calibrate_tracks`).

Measured on the shared KDEF (34 people, person-level two-fold: n and STRENGTH fitted on one half, scored on
the other; a non-neutral photo is calibrated with the same view's neutral, a neutral photo with another
view's): see README "Per-person calibration".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mien.expression.aus import AU_NAMES
from mien.expression.classes import EXPRESSIONS

if TYPE_CHECKING:
    from mien.expression.rules import RuleSet

STRENGTH = 0.5  # chosen on the other half of the KDEF people in each fold (0.5 in both, people read out of fold)
POPULATION_NEUTRAL = np.array([-0.383, -6.287, -6.756, -4.05, -6.978, -9.257, -8.547, -7.694])  # EXPRESSIONS order
# The same photos' mean log-odds of AUxx_p, AU_NAMES order.
POPULATION_AU_NEUTRAL = np.array([-4.171, -4.464, -1.193, -1.703, -3.698, -4.818, -2.974, -2.619, -0.216, -3.726,
                                  -4.573, -3.277, -4.686, -3.83, -2.847, -0.301, -1.779, -5.427, -4.392, -7.647])
_FLOOR = 1e-6


class NeutralReferenceError(ValueError):
    """A reference list that cannot be used (the message names the file and the problem)."""


def read_references(path: str | Path) -> pd.DataFrame:
    """`person, path, neutral` rows from a CSV (paths relative to the CSV's folder), or from a folder with one
    sub-folder per person holding their photos, the neutral one(s) named `neutral*` (`neutral.jpg`,
    `neutral_2.png`...); files that are not images are left out."""
    from mien.io.images import IMAGE_SUFFIXES

    path = Path(path)
    if path.is_dir():
        rows = [{"person": person.name, "path": str(photo.resolve()),
                 "neutral": photo.stem.lower().startswith("neutral")}
                for person in sorted(p for p in path.iterdir() if p.is_dir()) for photo in sorted(person.iterdir())
                if photo.is_file() and photo.suffix.lower() in IMAGE_SUFFIXES]
        table = pd.DataFrame(rows, columns=["person", "path", "neutral"])
    else:
        table = _csv_references(path, str(path), "path")
        table["path"] = [str((path.parent / p).resolve()) for p in table["path"]]
    return _with_a_neutral(table, str(path))


def references_for_names(text: str, names: list[str]) -> pd.DataFrame:
    """A reference list (as `read_references` returns) from CSV text `person,file,neutral` whose `file`s are among
    `names` (the sources of a table, e.g. a server job's uploads). `NeutralReferenceError` (one line) otherwise."""
    import io

    rows = _csv_references(io.StringIO(text), "reference", "file")
    unknown = sorted(set(rows["file"]) - set(names))
    if unknown:
        raise NeutralReferenceError(f"reference: {unknown[0]} is not one of the uploaded files")
    table = pd.DataFrame({"person": rows["person"], "path": [str(Path(f).resolve()) for f in rows["file"]],
                          "neutral": rows["neutral"]})
    return _with_a_neutral(table, "reference")


def _csv_references(source, where: str, file_column: str) -> pd.DataFrame:
    """The `person, <file_column>, neutral` rows of a reference CSV (a path or a text buffer), `neutral` as booleans
    (`_marks_neutral`; blank is not neutral); `where` starts each error line."""
    try:
        rows = pd.read_csv(source, dtype={"person": str, file_column: str})
    except (OSError, ValueError) as exc:  # pandas' parser errors are ValueErrors
        raise NeutralReferenceError(f"{where}: cannot read the reference list ({exc})") from None
    missing = {"person", file_column, "neutral"} - set(rows.columns)
    if missing:
        raise NeutralReferenceError(f"{where}: needs the columns person, {file_column}, neutral (missing "
                                    f"{', '.join(sorted(missing))})")
    rows["neutral"] = [_marks_neutral(value) for value in rows["neutral"]]
    return rows


_YES = {"1", "1.0", "true", "yes", "y", "x", "neutral"}


def _marks_neutral(value) -> bool:
    """A `neutral` cell as spreadsheets write it: 1 (or 1.0 in a column with blanks), true, yes, y, x."""
    return str(value).strip().lower() in _YES


def _with_a_neutral(table: pd.DataFrame, where: str) -> pd.DataFrame:
    if not table["neutral"].any():
        raise NeutralReferenceError(f"{where}: no neutral photo marked (a person needs one to be calibrated)")
    return table


def calibrate(table: pd.DataFrame, references: pd.DataFrame, strength: float = STRENGTH,
              population: np.ndarray | None = None, au_population: np.ndarray | None = None) -> pd.DataFrame:
    """A copy of a photo table with calibrated columns for every face whose source is in `references`
    (`read_references`); other rows get NaN there. `population`, `au_population`: n and its AU log-odds, if not
    `POPULATION_NEUTRAL` and `POPULATION_AU_NEUTRAL`. Custom expressions recorded in the table's provenance are
    read again from the calibrated columns."""
    out = _with_people(table.copy(), references)
    return _calibrated(out, _photo_rest_rows(out, references), strength, population, au_population)


def photo_rests(table: pd.DataFrame, references: pd.DataFrame) -> dict[str, Rest]:
    """Each person's rest from a photo table, as `calibrate` takes it: the first face of their neutral photos."""
    rows = _with_people(table.copy(), references)
    return _rests(rows, _photo_rest_rows(rows, references))


def _with_people(table: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """`table` with the `person` of each row's source (None for sources the references do not list)."""
    table["person"] = _sources_and_first_faces(table)[0].map(dict(zip(references["path"], references["person"])))
    return table


def _photo_rest_rows(table: pd.DataFrame, references: pd.DataFrame) -> np.ndarray:
    """Which rows are a rest: the first face of a photo the references mark neutral."""
    sources, first_faces = _sources_and_first_faces(table)
    return first_faces & sources.isin(set(references.loc[references["neutral"], "path"])).to_numpy()


def _sources_and_first_faces(table: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """Each row's source as an absolute path (as `read_references` writes them), and whether the row is its photo's
    first face: the one a neutral photo gives as its person's rest."""
    sources = table["source"].map(lambda s: str(Path(s).resolve()) if isinstance(s, str) else s)
    faces = table["face_found"].fillna(False).astype(bool).to_numpy()
    return sources, faces & (table["face_id"].to_numpy() == 0)


RELATIVE_HINT = " (paths in a reference list are relative to its folder)"


def people_without_rest(table: pd.DataFrame, references: pd.DataFrame, where: str, hint: str = RELATIVE_HINT
                        ) -> list[str]:
    """One line per person of `references` (`read_references`) whose neutral photos give `table` no face, so that
    `calibrate` leaves their rows uncalibrated: no face was found in it, the photo does not exist (`hint` follows),
    or it is not among the table's sources. `where` starts each line."""
    sources, first_faces = _sources_and_first_faces(table)
    read, with_face = set(sources), set(sources[first_faces])
    lines = []
    for person, rows in references[references["neutral"]].groupby("person", sort=True):
        paths = list(rows["path"])
        if with_face.intersection(paths):
            continue
        if read.intersection(paths):
            problem = "no face found in the neutral photo " + paths[0]
        elif not any(Path(p).exists() for p in paths):
            problem = f"the neutral photo {paths[0]} does not exist{hint}"
        else:
            problem = f"the neutral photo {paths[0]} is not in the table (not analysed, or unreadable)"
        lines.append(f"{where}: {person}: {problem}; their rows are not calibrated")
    return lines


def parse_window(text: str) -> tuple[float, float] | None:
    """(start_s, end_s) from "0-5" or "0-5s"; None for "auto". ValueError (one line) for anything else."""
    text = text.strip().lower()
    if text == "auto":
        return None
    start, sep, end = text.removesuffix("s").partition("-")
    try:
        window = (float(start), float(end))
    except ValueError:
        raise ValueError(f"calibration window {text!r}: give START-END in seconds (0-5s) or auto") from None
    if not sep or not 0 <= window[0] < window[1]:
        raise ValueError(f"calibration window {text!r}: give START-END in seconds with START < END (0-5s) or auto")
    return window


def calibrate_tracks(table: pd.DataFrame, window: tuple[float, float] | None = None, strength: float = STRENGTH,
                     population: np.ndarray | None = None) -> tuple[pd.DataFrame, dict[int, tuple[float, float]]]:
    """Per-track calibration of a video table: each track's rest is its rows in `window` (seconds), or, with None,
    its most neutral `AUTO_WINDOW_S` (the highest mean `expr_neutral` over at least `AUTO_MIN_ROWS` rows).
    Returns the copy with calibrated columns (`person` is "track N") and the rest window used per track; a track
    without rows in the window is left uncalibrated (NaN). Custom expressions as in `calibrate`."""
    out = table.copy()
    faces = out["face_found"].fillna(False).astype(bool).to_numpy()
    tracks = pd.to_numeric(out["track_id"], errors="coerce").fillna(-1).astype(int).to_numpy()
    times = pd.to_numeric(out["time_s"], errors="coerce").to_numpy(np.float64)
    tracked = faces & (tracks >= 0)
    out["person"] = pd.Series(np.where(tracked, [f"track {t}" for t in tracks], None), index=out.index, dtype=object)
    rest = np.zeros(len(out), bool)
    used: dict[int, tuple[float, float]] = {}
    neutral = out["expr_neutral"].to_numpy(np.float64)
    for track in np.unique(tracks[tracked]):
        index = np.flatnonzero(tracked & (tracks == track))
        index = index[np.argsort(times[index], kind="stable")]
        span = window if window is not None else _most_neutral(times[index], neutral[index])
        if span is None:
            continue
        chosen = index[(times[index] >= span[0]) & (times[index] < span[1]) & np.isfinite(neutral[index])]
        if len(chosen):
            rest[chosen] = True
            used[int(track)] = (round(float(span[0]), 3), round(float(span[1]), 3))
    return _calibrated(out, rest, strength, population), used


AUTO_WINDOW_S = 2.0  # the stretch of a track taken as its rest when no window is given
AUTO_MIN_ROWS = 5


def calibrate_video_table(table: pd.DataFrame, window: str) -> tuple[pd.DataFrame, dict]:
    """`calibrate_tracks` for a window as users write it ("0-5s" or "auto", see `parse_window`): the calibrated copy
    and the provenance of a table extended by its `calibration` entry (the window asked for and each track's rest)."""
    span = parse_window(window)
    out, used = calibrate_tracks(table, span)
    rest = (f"rows in {span[0]:g}-{span[1]:g} s" if span else
            f"each track's most neutral {AUTO_WINDOW_S:g} s (highest mean expr_neutral)")
    record = dict(table.attrs.get("provenance") or {})
    record["calibration"] = {"window": window, "method": "mien.expression.neutral, per track", "rest": rest,
                             "rest_windows": {str(k): list(v) for k, v in used.items()}}
    return out, record


def _most_neutral(times: np.ndarray, neutral: np.ndarray) -> tuple[float, float] | None:
    """[start, start + AUTO_WINDOW_S) with the highest mean neutral probability over >= AUTO_MIN_ROWS rows."""
    best, best_score = None, -np.inf
    ends = np.searchsorted(times, times + AUTO_WINDOW_S, side="left")
    for i, stop in enumerate(ends):
        values = neutral[i:stop]
        values = values[np.isfinite(values)]
        if len(values) >= AUTO_MIN_ROWS and values.mean() > best_score:
            best, best_score = (float(times[i]), float(times[i]) + AUTO_WINDOW_S), float(values.mean())
    return best


def _calibrated(out: pd.DataFrame, rest: np.ndarray, strength: float, population: np.ndarray | None,
                au_population: np.ndarray | None = None) -> pd.DataFrame:
    """`out` (with its `person` column) and the calibrated columns, each person's `rest` rows as their rest."""
    from mien.expression.rules import recorded_rules

    return with_rests(out, _rests(out, rest), strength, population, au_population,
                      recorded_rules(out.attrs.get("provenance")))


def _rests(out: pd.DataFrame, rest: np.ndarray) -> dict:
    """Each `person` of `out` with rows in `rest` (and a face): their `Rest`."""
    faces = out["face_found"].fillna(False).astype(bool).to_numpy()
    rests = {}
    for person, rows in out.groupby("person").groups.items():
        index = out.index.get_indexer(rows)
        at_rest = index[rest[index] & faces[index]]
        if len(at_rest):
            rests[person] = rest_of(out.iloc[at_rest])
    return rests


@dataclass(frozen=True)
class Rest:
    """How one person's face reads at rest: means over their neutral rows."""

    log_p: np.ndarray  # (8,) expression log-probabilities, EXPRESSIONS order
    aus: np.ndarray  # (20,) AU intensities 0-1, AU_NAMES order
    au_log_odds: np.ndarray  # (20,) log-odds of the AU probabilities AUxx_p


def rest_of(rows: pd.DataFrame) -> Rest:
    """A person's rest from their neutral rows."""
    return Rest(_log_probabilities(rows).mean(0), rows[list(AU_NAMES)].to_numpy(np.float64).mean(0),
                _au_log_odds(rows).mean(0))


def with_rests(out: pd.DataFrame, rests: dict[object, Rest], strength: float = STRENGTH,
               population: np.ndarray | None = None, au_population: np.ndarray | None = None,
               rules: RuleSet | None = None) -> pd.DataFrame:
    """`out` with the calibrated columns, where each row's `person` has a rest in `rests` (from `rest_of`); NaN
    (None) in the others; `rules`: custom expressions to read again from the calibrated columns
    (`custom_<name>_cal`). Modifies and returns `out`."""
    population = POPULATION_NEUTRAL if population is None else np.asarray(population)
    au_population = POPULATION_AU_NEUTRAL if au_population is None else np.asarray(au_population)
    faces = out["face_found"].fillna(False).astype(bool).to_numpy()
    log_p = _log_probabilities(out)
    aus = out[list(AU_NAMES)].to_numpy(np.float64)
    au_log_odds = _au_log_odds(out)
    calibrated = np.full_like(log_p, np.nan)
    relative = np.full_like(aus, np.nan)
    au_calibrated = np.full_like(au_log_odds, np.nan)
    for person, rows in out.groupby("person").groups.items():
        if person not in rests:
            continue
        index = out.index.get_indexer(rows)
        rest = rests[person]
        offset = rest.log_p - population
        offset[0] = 0.0  # the neutral class keeps its reading
        shifted = log_p[index] - strength * offset
        shifted -= shifted.max(1, keepdims=True)
        calibrated[index] = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        relative[index] = np.clip(aus[index] - rest.aus, 0.0, 1.0)
        au_calibrated[index] = au_log_odds[index] - strength * (rest.au_log_odds - au_population)
    probabilities = np.exp(calibrated)
    probabilities[~faces] = np.nan
    for k, name in enumerate(EXPRESSIONS):
        out[f"expr_{name}_cal"] = probabilities[:, k].astype(np.float32)
    known = ~np.isnan(probabilities).any(1)
    labels = np.array(EXPRESSIONS, dtype=object)[np.nan_to_num(probabilities).argmax(1)]
    out["expression_cal"] = pd.Series(np.where(known, labels, None), index=out.index, dtype=object)
    out["expression_status_cal"] = _status(out, probabilities)
    for k, name in enumerate(AU_NAMES):
        out[f"{name}_cal"] = relative[:, k].astype(np.float32)
    au_probabilities = 1.0 / (1.0 + np.exp(-au_calibrated))
    au_probabilities[~faces] = np.nan
    for k, name in enumerate(AU_NAMES):
        out[f"{name}_p_cal"] = au_probabilities[:, k].astype(np.float32)
    from mien.expression.affect import valence_arousal

    affect = np.full((len(out), 2), np.nan, np.float32)
    if known.any():
        affect[known] = valence_arousal(probabilities[known], relative[known])
    out["valence_cal"], out["arousal_cal"] = affect[:, 0], affect[:, 1]
    if rules is not None:
        _add_custom_calibrated(out, rules, known)
    return out


def _add_custom_calibrated(out: pd.DataFrame, rules: RuleSet, known: np.ndarray) -> None:
    """`custom_<name>_cal`: each rule read from the calibrated columns where a column has one (`expr_*_cal`,
    `AUxx_p_cal`, `AUxx_cal`, `valence_cal`...), the others (pose, gaze, blendshapes) as they are; NaN without a
    rest. Rules reading a column the table lacks are left out."""
    from mien.expression.rules import NUMERIC_COLUMNS, PROBABILITY_COLUMNS

    needed = set().union(*(rule.columns_read() for rule in rules.rules)) - set(rules.columns)
    if not needed <= set(out.columns):
        return
    columns = {}
    for name in needed & (PROBABILITY_COLUMNS | NUMERIC_COLUMNS):
        source = f"{name}_cal" if f"{name}_cal" in out.columns else name
        columns[name] = out[source].to_numpy(np.float64, na_value=np.nan)
    for name, values in rules.evaluate(columns, len(out)).items():
        out[f"{name}_cal"] = np.where(known, values, np.nan).astype(np.float32)


def _status(out: pd.DataFrame, probabilities: np.ndarray) -> pd.Series:
    """The open-set status of the calibrated reading (`openset.statuses`): "unknown" stays (familiarity does not
    depend on the person's rest); otherwise "uncertain" when the calibrated top class is below `UNCERTAIN_BELOW`
    or a quality flag says the face cannot be trusted, else "known"; None without a reading."""
    from mien.expression.openset import UNTRUSTED_FLAGS, statuses

    flags = [f"flag_{name}" for name in UNTRUSTED_FLAGS if f"flag_{name}" in out.columns]
    untrusted = out[flags].fillna(False).astype(bool).any(axis=1).to_numpy() if flags else np.zeros(len(out), bool)
    before = out["expression_status"].to_numpy(object) if "expression_status" in out.columns else np.full(len(out), None)
    # The table keeps the verdict, not the familiarity threshold of its prior: an unknown face is below any.
    familiarity = np.where(before == "unknown", -np.inf, np.inf)
    return pd.Series(statuses(probabilities, familiarity, untrusted, 0.0), index=out.index, dtype=object)


def _au_log_odds(table: pd.DataFrame) -> np.ndarray:
    probabilities = table[[f"{name}_p" for name in AU_NAMES]].to_numpy(np.float64)
    probabilities = np.clip(probabilities, _FLOOR, 1.0 - _FLOOR)
    return np.log(probabilities / (1.0 - probabilities))


def _log_probabilities(table: pd.DataFrame) -> np.ndarray:
    probabilities = table[[f"expr_{c}" for c in EXPRESSIONS]].to_numpy(np.float64)
    return np.log(np.clip(probabilities, _FLOOR, 1.0))
