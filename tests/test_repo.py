"""Repository hygiene: the package is tracked, notebooks are committed clean and parameterised."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from lib.paths import NOTEBOOKS_DIR, REPO_ROOT

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="not a git checkout")
def test_no_package_file_is_git_ignored() -> None:
    # GitHub's stock Python .gitignore ignores lib/ (and an unanchored data/ hides lib/data/).
    ignored = _git("ls-files", "--others", "--ignored", "--exclude-standard",
                   "lib", "tests", "notebooks", "params", "benchmarks")
    ignored = [line for line in ignored.splitlines() if "__pycache__" not in line and not line.endswith(".pyc")]
    assert ignored == []


def test_notebooks_exist_in_order() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert names and names[0] == "00_environment_check"
    assert all(n[:2].isdigit() and n[2] == "_" for n in names)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_clean_and_parameterised(notebook: Path) -> None:
    nb = json.loads(notebook.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    stripped = all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert stripped, "commit notebooks without outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one code cell tagged 'parameters'"
    assert nb["cells"][0]["cell_type"] == "markdown", "first cell states the notebook's purpose"
    # thin notebooks: no function or class definitions (logic belongs in lib/)
    for cell in code:
        src = "".join(cell["source"])
        definition = re.search(r"^\s*(async\s+def|def|class)\s", src, re.M)
        assert not definition, f"{notebook.name}: move definitions into lib/"
