"""The typed core (`Analyzer`, `Faces`, the options) passes `mypy --strict`; the package ships py.typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_is_clean_under_mypy_strict():
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_package_ships_py_typed():
    import mien

    assert (Path(mien.__file__).parent / "py.typed").is_file()
