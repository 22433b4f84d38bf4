"""JupyterLab integration: a notebook run and saved by hand also lands in its run directory.

``python -m lib.lab install`` (``make venv`` runs it) writes two settings into the environment:

- ``etc/jupyter/jupyter_server_config.json`` (other settings in it kept) makes
  :func:`copy_to_run_dir` the contents manager's post-save hook. When JupyterLab saves a notebook whose outputs name a
  run directory (:func:`lib.tables.run_note` attaches it to its output), the saved notebook is
  copied there as ``<notebook>.ipynb``, as the study runner leaves its executed copies. Other
  notebooks, and a notebook saved inside its own run directory, are left alone; a failing copy
  never fails the save.
- ``share/jupyter/lab/settings/overrides.json`` turns on the widget manager's ``saveState``, so
  a saved notebook keeps its widgets' last state (a reader without a kernel sees the last view).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from lib.runs import atomic_write_text
from lib.tables import METADATA_KEY

log = logging.getLogger(__name__)


def run_dir_of(notebook: dict[str, Any]) -> Path | None:
    """The run directory named in a notebook's outputs (the first :func:`lib.tables.run_note`)."""
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) or []:
            entry = (output.get("metadata") or {}).get(METADATA_KEY) or {}
            if entry.get("run_dir"):
                return Path(entry["run_dir"])
    return None


def copy_to_run_dir(model: dict[str, Any] | None = None, os_path: str = "", contents_manager: Any = None,
                    **kwargs: Any) -> Path | None:
    """Post-save hook: copy the saved notebook ``os_path`` into the run directory its outputs name."""
    if not os_path.endswith(".ipynb") or (model or {}).get("type", "notebook") != "notebook":
        return None
    source = Path(os_path)
    try:
        notebook = json.loads(source.read_text(encoding="utf-8"))
        run_dir = run_dir_of(notebook)
        if run_dir is None or not run_dir.is_dir():
            return None
        target = run_dir / source.name
        if target.resolve() == source.resolve():
            return None
        atomic_write_text(target, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
        return target
    except Exception as err:  # noqa: BLE001 - saving the notebook itself must never fail because of the copy
        log.warning("could not copy %s into its run directory: %s", os_path, err)
        return None


SERVER_CONFIG = Path("etc/jupyter/jupyter_server_config.json")  # a .d/ file would only enable extensions
LAB_OVERRIDES = Path("share/jupyter/lab/settings/overrides.json")
WIDGETS_PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"


def install(prefix: str | Path = sys.prefix) -> list[Path]:
    """Write the two settings (see the module docstring) under ``prefix``; other overrides are kept."""
    prefix = Path(prefix)
    written = []
    settings_to_write = ((SERVER_CONFIG, "ContentsManager", "post_save_hook", "lib.lab.copy_to_run_dir"),
                         (LAB_OVERRIDES, WIDGETS_PLUGIN, "saveState", True))
    for relative, section, key, value in settings_to_write:
        path = prefix / relative
        settings = json.loads(path.read_text()) if path.is_file() else {}
        settings.setdefault(section, {})[key] = value
        atomic_write_text(path, json.dumps(settings, indent=2) + "\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser("install", help="write the JupyterLab settings into this environment")
    p_install.add_argument("--prefix", default=sys.prefix, help="environment root (default: this Python's)")
    args = parser.parse_args(argv)
    for path in install(args.prefix):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
