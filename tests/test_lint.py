"""``ruff check lib tests benchmarks`` passes with the configuration in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lib.paths import REPO_ROOT


def _ruff() -> list[str] | None:
    """The ruff of this interpreter's environment (the dev extra pins it), else one on PATH."""
    beside = Path(sys.executable).with_name("ruff")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("ruff")
    return [found] if found else None


def test_ruff_check_is_clean() -> None:
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]' installs the pinned version)")
    command = [*ruff, "check", "--no-cache", "--output-format", "concise", "lib", "tests", "benchmarks"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"ruff check failed:\n{result.stdout}{result.stderr}"
