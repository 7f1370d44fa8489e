"""Custom expressions: rules over AU and expression probabilities, evaluated per face as a probability.

A rules file is TOML, one table per expression under `[expressions]`:

    [expressions.duchenne_smile]
    description = "smile reaching the eyes: cheek raiser with lip corner puller"
    all = ["AU06_p", "AU12_p"]

    [expressions.polite_smile]
    all = ["AU12_p"]
    none = ["AU06_p"]

    [expressions.looking_away]
    any = ["pose_yaw > 30", "pose_yaw < -30"]

Each condition is a column of the result table, either bare (read as a probability: `AUxx_p`,
`expr_<class>`, the 0-1 AU intensities `AUxx` and one-sided `AU12_L`..., blendshapes `bs_*`,
`expression_confidence`, and `custom_<name>` of a rule defined above it) or compared with a number
(`>`, `>=`, `<`, `<=`: 1 when it holds, else 0; any numeric column, e.g. `pose_yaw` in degrees, `valence`).
A rule needs at least one of `all`, `any`, `none`.

**Logic: product (probabilistic) fuzzy logic.** `all` multiplies its degrees, `any` is their probabilistic
sum 1 - prod(1 - p), `none` multiplies 1 - p; the three parts multiply. For calibrated probabilities of
independent events that is the probability that the rule holds. Unlike min/max (Zadeh) logic every input
moves the result: a face with AU06 0.9 and AU12 0.9 reads 0.81, one with 0.9 and 0.6 reads 0.54, where min
would rank them by the weaker AU alone and ignore the stronger. Faces without a mesh read NaN.

Each rule becomes a `custom_<name>` column (0-1). A bad file fails before any work, with one line naming the
file, the rule and the problem (`RulesError`).

Built-in rule sets, used by name instead of a path: `compound` (RAF-CE's 14 compound expressions from mien's
expression probabilities: `custom_happily_surprised`...) and `compound-facs` (the same compounds from the FACS
prototype AUs of Du, Tao & Martinez 2014); see `mien eval-rules`.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from mien.expression.aus import AU_NAMES, SIDE_NAMES
from mien.expression.classes import EXPRESSIONS
from mien.face.blendshapes import BLENDSHAPE_NAMES

PREFIX = "custom_"
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:(>=|<=|>|<)\s*(-?\d+(?:\.\d*)?|-?\.\d+))?\s*$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_PARTS = ("all", "any", "none")
# Columns in [0, 1] that a bare condition reads as a probability (or degree).
PROBABILITY_COLUMNS = frozenset(
    [f"{au}_p" for au in AU_NAMES] + [f"expr_{c}" for c in EXPRESSIONS] + list(AU_NAMES) + list(SIDE_NAMES)
    + [f"bs_{b}" for b in BLENDSHAPE_NAMES] + ["expression_confidence"])
# Other numeric columns a condition may compare with a number.
NUMERIC_COLUMNS = frozenset(["pose_yaw", "pose_pitch", "pose_roll", "gaze_yaw", "gaze_pitch", "valence",
                             "arousal", "expression_familiarity", "sharpness", "box_w", "box_h", "box_score"])


class RulesError(ValueError):
    """A rules file that cannot be used: the message names the file, the rule and the problem."""


@dataclass(frozen=True)
class Condition:
    column: str
    op: str | None = None
    threshold: float | None = None

    def degree(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        values = np.asarray(columns[self.column], np.float64)
        if self.op is None:
            return np.clip(values, 0.0, 1.0)
        assert self.threshold is not None
        held = {">": values > self.threshold, ">=": values >= self.threshold,
                "<": values < self.threshold, "<=": values <= self.threshold}[self.op]
        return np.where(np.isnan(values), np.nan, held.astype(np.float64))

    def __str__(self) -> str:
        return self.column if self.op is None else f"{self.column} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    all: tuple[Condition, ...] = ()
    any: tuple[Condition, ...] = ()
    none: tuple[Condition, ...] = ()

    @property
    def column(self) -> str:
        return PREFIX + self.name

    def columns_read(self) -> set[str]:
        return {c.column for c in self.all + self.any + self.none}

    def evaluate(self, columns: dict[str, np.ndarray], rows: int) -> np.ndarray:
        """(rows,) probability that the rule holds for each face."""
        out = np.ones(rows)
        for condition in self.all:
            out = out * condition.degree(columns)
        if self.any:
            miss = np.ones(rows)
            for condition in self.any:
                miss = miss * (1.0 - condition.degree(columns))
            out = out * (1.0 - miss)
        for condition in self.none:
            out = out * (1.0 - condition.degree(columns))
        return out


@dataclass(frozen=True)
class RuleSet:
    """The rules of one file, in file order (a rule may read the rules above it)."""

    rules: tuple[Rule, ...]
    path: str
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def columns(self) -> list[str]:
        return [rule.column for rule in self.rules]

    def provenance(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "text": self.text}

    def evaluate(self, columns: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """`custom_<name>` -> (rows,) float32 for the given table columns (name -> array)."""
        columns = dict(columns)
        out = {}
        for rule in self.rules:
            columns[rule.column] = out[rule.column] = rule.evaluate(columns, rows).astype(np.float32)
        return out

    def add_to_arrow(self, table):
        """The pyarrow table with a `custom_<name>` float32 column per rule (replacing any already there)."""
        import pyarrow as pa

        needed = set().union(*(r.columns_read() for r in self.rules)) - set(self.columns)
        missing = needed - set(table.schema.names)
        if missing:
            raise RulesError(f"{self.path}: the table has no column {sorted(missing)[0]}")
        columns = {name: table.column(name).to_numpy(zero_copy_only=False).astype(np.float64) for name in needed}
        for name, values in self.evaluate(columns, table.num_rows).items():
            array = pa.array(values, pa.float32(), from_pandas=True)
            if name in table.schema.names:
                table = table.set_column(table.schema.get_field_index(name), name, array)
            else:
                table = table.append_column(pa.field(name, pa.float32()), array)
        return table

    def add_to_frame(self, frame):
        """A copy of the DataFrame with the `custom_<name>` columns."""
        missing = set().union(*(r.columns_read() for r in self.rules)) - set(self.columns) - set(frame.columns)
        if missing:
            raise RulesError(f"{self.path}: the table has no column {sorted(missing)[0]}")
        columns = {name: frame[name].to_numpy(np.float64, na_value=np.nan) for name in frame.columns
                   if name in PROBABILITY_COLUMNS or name in NUMERIC_COLUMNS}
        out = frame.copy()
        for name, values in self.evaluate(columns, len(frame)).items():
            out[name] = values
        return out


BUILTIN_RULES = {"compound": "compound.toml", "compound-facs": "compound_facs.toml"}


def load_rules(path: str | Path) -> RuleSet:
    """Read and check a rules file, or a built-in rule set by name (`BUILTIN_RULES`; a file of that name in the
    working folder wins); `RulesError` names the file, rule and problem."""
    if str(path) in BUILTIN_RULES and not Path(path).exists():
        builtin = Path(__file__).parents[1] / "data" / "rules" / BUILTIN_RULES[str(path)]
        return parse_rules(builtin.read_text(encoding="utf-8"), f"{path} (built-in)")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"{path}: cannot read the rules file ({exc.__class__.__name__}: {exc})") from None
    return parse_rules(text, str(path))


def recorded_rules(provenance: dict | None) -> RuleSet | None:
    """The rule set a table's provenance records (`options.expressions`: its path and text), or None."""
    record = ((provenance or {}).get("options") or {}).get("expressions")
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return None
    return parse_rules(record["text"], str(record.get("path", "<rules>")))


def parse_rules(text: str, path: str = "<rules>") -> RuleSet:
    """Rules from TOML text (`path` names it in errors)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(data) - {"expressions"}
    if unknown:
        raise RulesError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} (rules go under [expressions.NAME])")
    expressions = data.get("expressions")
    if not isinstance(expressions, dict) or not expressions:
        raise RulesError(f"{path}: no rules (add tables like [expressions.duchenne_smile])")
    rules: list[Rule] = []
    for name, body in expressions.items():
        rules.append(_rule(path, name, body, {r.column for r in rules}))
    return RuleSet(tuple(rules), path, text)


def _rule(path: str, name: str, body, earlier: set[str]) -> Rule:
    where = f"{path}: rule {name!r}"
    if not _NAME.match(name):
        raise RulesError(f"{where}: a name is lower-case letters, digits and _ (it becomes the column {PREFIX}{name})")
    if not isinstance(body, dict):
        raise RulesError(f"{where}: expected a table with all/any/none")
    unknown = set(body) - set(_PARTS) - {"description"}
    if unknown:
        raise RulesError(f"{where}: unknown key {sorted(unknown)[0]!r} (use all, any, none, description)")
    parts = {}
    for part in _PARTS:
        items = body.get(part, [])
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise RulesError(f"{where}: {part} must be a list of conditions as strings")
        parts[part] = tuple(_condition(where, item, earlier) for item in items)
    if not any(parts.values()):
        raise RulesError(f"{where}: needs at least one condition in all, any or none")
    description = body.get("description", "")
    if not isinstance(description, str):
        raise RulesError(f"{where}: description must be a string")
    return Rule(name, description, parts["all"], parts["any"], parts["none"])


def _condition(where: str, text: str, earlier: set[str]) -> Condition:
    match = _CONDITION.match(text)
    if not match:
        raise RulesError(f"{where}: cannot read condition {text!r} (write a column, or a column, >, >=, < or <= "
                         f"and a number: 'AU06_p', 'pose_yaw > 30')")
    column, op, number = match.groups()
    known_probability = column in PROBABILITY_COLUMNS or column in earlier
    if not known_probability and column not in NUMERIC_COLUMNS:
        hint = _closest(column)
        raise RulesError(f"{where}: unknown column {column!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
    if op is None and not known_probability:
        raise RulesError(f"{where}: {column} is not a 0-1 probability; compare it with a number ({column} > ...)")
    return Condition(column, op, None if number is None else float(number))


def _closest(column: str) -> str | None:
    import difflib

    known = PROBABILITY_COLUMNS | NUMERIC_COLUMNS
    padded = re.sub(r"^au0*(\d+)", lambda m: f"AU{int(m.group(1)):02d}", column, flags=re.IGNORECASE)  # AU6_p -> AU06_p
    if padded in known:
        return padded
    found = difflib.get_close_matches(column, sorted(known), n=1, cutoff=0.75)
    return found[0] if found else None
