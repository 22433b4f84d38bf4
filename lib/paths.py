"""Repository paths, resolved from this package's location, never from the working directory.

papermill runs notebooks in the launch directory and nbmake in the notebook's directory, so
every path a notebook or CLI uses by default comes from here.

Environment overrides (useful on clusters where the repo lives on a small home volume):
``LVS_DATA_DIR`` (datasets), ``LVS_OUTPUTS_DIR`` (run directories), ``LVS_CHECKPOINTS_DIR``.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from lib.errors import ActionableError, UnwritableLocationError

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


_LOCATION_VARIABLES = (("LVS_DATA_DIR", "DATA_DIR"), ("LVS_OUTPUTS_DIR", "OUTPUTS_DIR"),
                       ("LVS_CHECKPOINTS_DIR", "CHECKPOINTS_DIR"))
# errno values that mean "this location cannot be written", as opposed to a bug or a bad path
WRITE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})


def location_fix(path: str | os.PathLike[str], fix: str) -> str:
    """``fix``, plus the environment variable that moves ``path``'s location when it lies under
    one of the data, outputs or checkpoints folders."""
    target = Path(path).expanduser().absolute()
    for variable, name in _LOCATION_VARIABLES:
        base = globals()[name]
        if target == base or base in target.parents:
            value = os.environ.get(variable, "").strip()
            where = f"it is {value}" if value else f"default {base}"
            return f"{fix}, or set {variable} to a writable folder ({where})"
    return fix


def ensure_writable_dir(path: str | os.PathLike[str], *, what: str, fix: str,
                        error: type[ActionableError] = UnwritableLocationError) -> Path:
    """Create ``path`` (with parents) and check that a file can be created in it.

    Raises ``error`` naming the folder, ``what`` it is for and ``fix`` (with the environment
    variable that moves it, see :func:`location_fix`) on a read-only filesystem, missing
    permission or a full disk, instead of a raw ``OSError`` from deep inside a build.
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".lvs-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        raise error(folder, f"{what} cannot be written ({err.strerror or err})", location_fix(folder, fix)) from err
    return folder


def unwritable_error(err: OSError, *, what: str, fix: str,
                     error: type[ActionableError] = UnwritableLocationError) -> ActionableError | None:
    """The typed error for an ``OSError`` that says a location cannot be written (None otherwise)."""
    if err.errno not in WRITE_ERRNOS:
        return None
    where = err.filename if err.filename is not None else None
    return error(where, f"{what} cannot be written ({err.strerror or err})",
                 location_fix(where, fix) if where is not None else fix)
