"""Run directories: one per (notebook, params), holding everything a result needs to be re-read.

Layout of ``outputs/runs/<study>/<notebook>/``::

    config.json     resolved parameters (+ versions, seed, host) of the run, written first
    history.csv     append-only rows (e.g. one per epoch), never rewritten
    metrics.json    final metrics, written atomically at the end
    figures/*.png   figures
    <notebook>.ipynb  the executed notebook (written by the study runner / papermill)

A notebook executed by hand or by nbmake (no ``run_dir`` given) writes under
``outputs/runs/adhoc/<notebook>/`` so it never clobbers a study's results.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import socket
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from lib.paths import RUNS_DIR, ensure_writable_dir, resolve_path

ADHOC_STUDY = "adhoc"


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temp file beside ``path``, fsync, then rename over ``path``: readers
    (and a rerun after ``kill -9``) see the old file or the new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would (0666 & ~umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class RunDir:
    """A run directory and the few ways results are written into it."""

    path: Path

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    def save_config(self, params: Mapping[str, Any]) -> Path:
        """Record resolved parameters plus provenance (time, host, python) as config.json."""
        record = {
            "params": _jsonable(params),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "python": platform.python_version(),
        }
        out = self.path / "config.json"
        atomic_write_text(out, json.dumps(record, indent=2, sort_keys=True) + "\n")
        return out

    def save_metrics(self, metrics: Mapping[str, Any]) -> Path:
        out = self.path / "metrics.json"
        atomic_write_text(out, json.dumps(_jsonable(metrics), indent=2, sort_keys=True) + "\n")
        return out

    def load_metrics(self) -> dict[str, Any]:
        return json.loads((self.path / "metrics.json").read_text())

    def append_history(self, row: Mapping[str, Any]) -> Path:
        """Append one row to history.csv (header written once; columns must not change)."""
        out = self.path / "history.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        new = not out.exists() or out.stat().st_size == 0
        if not new:
            with open(out, newline="") as fh:
                header = next(csv.reader(fh))
            if header != list(row):
                raise ValueError(f"{out}: history columns {list(row)} differ from the file's {header}")
        with open(out, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow({k: _jsonable(v) for k, v in row.items()})
            fh.flush()
            os.fsync(fh.fileno())
        return out

    def save_figure(self, fig: Any, name: str, *, dpi: int = 110) -> Path:
        """Save a matplotlib figure as figures/<name>.png (atomically)."""
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        out = self.figures_dir / f"{name}.png"
        tmp = self.figures_dir / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, out)
        return out


def open_run(notebook: str, run_dir: str | os.PathLike[str] = "", params: Mapping[str, Any] | None = None) -> RunDir:
    """The run directory of a notebook: ``run_dir`` if given (the study runner passes it), else
    ``outputs/runs/adhoc/<notebook>``. Saves ``params`` as config.json when given. A folder that
    cannot be written is an UnwritableLocationError naming it (and ``LVS_OUTPUTS_DIR``)."""
    path = resolve_path(run_dir) if str(run_dir) else RUNS_DIR / ADHOC_STUDY / notebook
    ensure_writable_dir(path, what="the run directory", fix="make it writable")
    run = RunDir(path)
    if params is not None:
        run.save_config(params)
    return run


def declared_parameters(notebook: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The parameters ``notebook`` declares in its tagged ``parameters`` cell, in order: name ->
    papermill's record of it (``inferred_type_name``, ``default`` as source text, ``help``).

    The one reading of a notebook's parameters: the study runner checks params files against it
    and notebooks record their resolved parameters through it.
    """
    import papermill

    return dict(papermill.inspect_notebook(os.fspath(notebook)))


def notebook_parameters(namespace: Mapping[str, Any], notebook: str) -> dict[str, Any]:
    """The current values of ``notebook``'s parameters, read from its ``namespace`` (``globals()``).

    The names come from the notebook's tagged ``parameters`` cell (:func:`declared_parameters`),
    so a notebook records its resolved parameters without repeating their list.
    """
    from lib.paths import NOTEBOOKS_DIR

    names = declared_parameters(NOTEBOOKS_DIR / f"{notebook}.ipynb")
    return {name: namespace[name] for name in names if name in namespace}
