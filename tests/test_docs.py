"""Every Python block of docs/python.md runs, in order, in a fresh folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"


def test_every_block_of_the_python_walkthrough_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6
    namespace: dict = {}
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        for k, block in enumerate(blocks):
            exec(compile(block, f"docs/python.md block {k + 1}", "exec"), namespace)
    finally:
        os.chdir(here)
    df = namespace["df"]
    assert len(df) == 6 and df["face_found"].all() and len(df.attrs["errors"]) == 1
    assert set(namespace["result"]["measure"]) >= {"AU12", "valence"}
    for picture in ("expressions.png", "detections.png", "person0.png", "openface_aus.png"):
        assert (tmp_path / picture).stat().st_size > 5000, picture
    assert len(namespace["openface"]) == len(namespace["video"])
