"""The terminal summary of an image analysis: one line per face, as many column groups as the terminal fits."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.table import Table

from mien.cli.common import console


# Terminal widths from which the summary adds column groups: pose, valence/arousal and score; then box,
# blendshapes and attributes. Below both: source, face, expression, top AUs and flags, one line per face (with a
# calibrated reading beside the expression, one top AU).
SUMMARY_TIERS = (110, 190)
CALIBRATED_WIDTH = 16  # what the calibrated column ("neutral 0.79" and its gap) takes from the tiers' room


def summary_table(frame, limit: int = 20, width: int | None = None) -> Table:
    """The faces as a terminal table that fits `width` (default: the terminal's), one line per face; every
    value is in the written table, and long names are shortened with an ellipsis rather than wrapped."""
    from mien.expression.aus import AU_NAMES

    width = width if width is not None else console.width
    calibrated = "expression_cal" in frame.columns
    room = width - (CALIBRATED_WIDTH if calibrated else 0)
    middle, wide = room >= SUMMARY_TIERS[0], room >= SUMMARY_TIERS[1]
    cramped = calibrated and not middle  # the calibrated column takes one AU and some of the name's room
    attributes = "apparent_age" in frame.columns and wide
    table = Table(title="faces", show_lines=False, box=box.SIMPLE_HEAD, pad_edge=False)
    columns = (["source", "face", "expression"] + (["calibrated"] if calibrated else [])
               + (["score", "yaw/pitch/roll", "val/arousal"] if middle else []) + (["box x,y,w,h"] if wide else [])
               + ["top AUs"] + (["top blendshape"] if wide else []) + ["flags"]
               + (["age, gender pres."] if attributes else []))
    for col in columns:
        table.add_column(col, no_wrap=True, overflow="ellipsis",
                         max_width=(18 if cramped else 26) if col == "source" else None)
    bs_cols = [c for c in frame.columns if c.startswith("bs_") and c != "bs_neutral"]
    for _, row in frame.head(limit).iterrows():
        cells = {"source": Path(str(row["source"])).name}
        if not row["face_found"]:
            cells.update({"face": "-", "expression": "no face found"})
            table.add_row(*[cells.get(col, "") for col in columns])
            continue
        aus = sorted(AU_NAMES, key=lambda a: -row[a])[:1 if cramped else 2]
        shapes = sorted(bs_cols, key=lambda c: -row[c])[:2]
        cells.update({
            "face": str(row["face_id"]),
            "expression": f"{row['expression']} {row['expression_confidence']:.2f}" if isinstance(row["expression"], str)
            else "-",
            "calibrated": _calibrated_cell(row) if calibrated else "",
            "score": f"{row['box_score']:.2f}",
            "box x,y,w,h": f"{row['box_x']:.0f},{row['box_y']:.0f},{row['box_w']:.0f},{row['box_h']:.0f}",
            "yaw/pitch/roll": f"{row['pose_yaw']:+.0f}/{row['pose_pitch']:+.0f}/{row['pose_roll']:+.0f}",
            "val/arousal": f"{row['valence']:+.2f}/{row['arousal']:+.2f}",
            "top AUs": " ".join(f"{a} {row[a]:.2f}" for a in aus) if wide else " ".join(f"{a} {row[a]:.1f}" for a in aus),
            "top blendshape": " ".join(f"{c[3:]} {row[c]:.2f}" for c in shapes[:1]),
            "flags": ",".join(c[5:] for c in frame.columns if c.startswith("flag_") and row[c]),
        })
        if attributes:
            cells["age, gender pres."] = (
                f"{row['apparent_age']:.0f} ({row['apparent_age_low']:.0f}-{row['apparent_age_high']:.0f}), "
                f"{row['gender_presentation']} {max(row['gender_presentation_p_female'], 1 - row['gender_presentation_p_female']):.2f}"
                if isinstance(row["gender_presentation"], str) else "-")
        table.add_row(*[cells.get(col, "") for col in columns])
    if len(frame) > limit:
        table.caption = f"first {limit} of {len(frame)} rows"
    return table


def _calibrated_cell(row) -> str:
    """The calibrated reading of a summary row ("-" for a person without a rest)."""
    label = row["expression_cal"]
    return f"{label} {row[f'expr_{label}_cal']:.2f}" if isinstance(label, str) else "-"
