"""conda (environment.yml) and pip (Makefile) set-ups install the same pinned set."""

from __future__ import annotations

import re
import tomllib

import yaml

from lib.paths import REPO_ROOT


def test_conda_and_make_install_the_same_extras() -> None:
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    assert pip_section == ["-e .[notebooks,dev,zoo]"]
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "pip install --quiet -e '.[notebooks,dev,zoo]'" in makefile


def test_the_core_install_is_torch_only() -> None:
    """diffusers (the zoo) is an extra, never a core dependency."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert not any(r.startswith("diffusers") for r in project["dependencies"])
    assert [r for r in project["optional-dependencies"]["zoo"] if r.startswith("diffusers==0.42.")]


def test_every_dependency_is_pinned_exactly() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    loose = [r for r in requirements if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.+]*", r)]
    assert loose == []
    names = {r.split("==")[0].lower().replace("_", "-") for r in requirements}
    needed = {"torch", "torchvision", "decord", "jupyterlab", "ipywidgets", "matplotlib", "seaborn", "papermill",
              "nbmake"}
    assert needed <= names


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in readme and "make study" in readme
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "pytest tests" in makefile and "pytest --nbmake notebooks/" in makefile
