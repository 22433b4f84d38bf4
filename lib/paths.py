"""Repository paths, resolved from this package's location, never from the working directory.

papermill runs notebooks in the launch directory and nbmake in the notebook's directory, so
every path a notebook or CLI uses by default comes from here.

Environment overrides (useful on clusters where the repo lives on a small home volume):
``LVS_DATA_DIR`` (datasets), ``LVS_OUTPUTS_DIR`` (run directories), ``LVS_CHECKPOINTS_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT: Path = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR: Path = REPO_ROOT / "notebooks"
PARAMS_DIR: Path = REPO_ROOT / "params"
TESTS_DIR: Path = REPO_ROOT / "tests"


def _dir_from_env(var: str, default: Path) -> Path:
    value = os.environ.get(var, "").strip()
    return Path(value).expanduser().resolve() if value else default


DATA_DIR: Path = _dir_from_env("LVS_DATA_DIR", REPO_ROOT / "data")
OUTPUTS_DIR: Path = _dir_from_env("LVS_OUTPUTS_DIR", REPO_ROOT / "outputs")
RUNS_DIR: Path = OUTPUTS_DIR / "runs"
CHECKPOINTS_DIR: Path = _dir_from_env("LVS_CHECKPOINTS_DIR", REPO_ROOT / "checkpoints")

# `../shared/reference` exists on the development machines only (checking data, never needed).
SHARED_REFERENCE_DIR: Path = REPO_ROOT.parent / "shared" / "reference"


def synthetic_dataset_dir(preset: str) -> Path:
    """Where the embedded synthetic dataset of a preset lives by default."""
    return DATA_DIR / f"synth_{preset}"


def resolve_path(path: str | os.PathLike[str], *, base: Path = REPO_ROOT) -> Path:
    """Resolve a user path: absolute stays, ``~`` expands, relative is taken from ``base``.

    Params files hold repo-relative paths so they work from any launch directory.
    """
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p).resolve()
