"""Counts in messages: "1 track", "2 tracks"."""

from __future__ import annotations


def counted(n: int, one: str, many: str | None = None) -> str:
    """`n` and the noun that goes with it: "1 track", "3 tracks"; `many` for irregular plurals ("1 person",
    "2 people")."""
    return f"{n} {one if n == 1 else many or one + 's'}"
