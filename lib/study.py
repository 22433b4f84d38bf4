"""The study runner: execute the numbered notebooks of a params file with papermill, in order.

``python -m lib.study run params/default.yaml`` (what ``make study`` calls).

A params file maps notebook stems to that notebook's parameters::

    00_environment_check:
      dataset_root: ""
      ...
    01_reconstruction: {...}

Each notebook runs in its own run directory ``outputs/runs/<params stem>/<notebook>/`` (passed to
it as the ``run_dir`` parameter) and its executed copy is saved there. A step is finished when
``DONE.json`` exists with the same fingerprint (params + notebook source); a rerun skips finished
steps and resumes at the first unfinished or changed one, re-running everything after it since
later notebooks read earlier ones' results. A failing notebook stops the chain; its executed copy,
with the traceback, stays in the run directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lib.paths import NOTEBOOKS_DIR, REPO_ROOT, RUNS_DIR, resolve_path
from lib.runs import atomic_write_text

DONE_FILE = "DONE.json"
STARTED_FILE = "STARTED.json"  # fingerprint of the settings a step's run directory was started with
STALE_DIR = "_stale"  # under RUNS_DIR: run directories of superseded settings (kept, never reused)
RESERVED_PARAMETERS = ("run_dir",)  # set by the runner, never by a params file


class StudyError(ValueError):
    """A params file that cannot be run (unknown notebook, bad structure) or a failed step."""


@dataclass(frozen=True)
class Step:
    notebook: Path
    parameters: dict[str, Any]

    @property
    def name(self) -> str:
        return self.notebook.stem


def load_study(params_file: str | Path) -> list[Step]:
    """Parse a params file into ordered steps; errors name the file and the offending key."""
    path = resolve_path(params_file)
    if not path.is_file():
        raise StudyError(f"{path}: params file not found. Fix: pass one of {sorted(p.name for p in (REPO_ROOT / 'params').glob('*.yaml'))}")
    content = yaml.safe_load(path.read_text()) or {}
    if not isinstance(content, dict):
        raise StudyError(f"{path}: top level must map notebook names to parameter dicts")
    steps = []
    for name, parameters in content.items():
        notebook = NOTEBOOKS_DIR / f"{name}.ipynb"
        if not notebook.is_file():
            known = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
            raise StudyError(f"{path}: '{name}' is not a notebook in {NOTEBOOKS_DIR}. Fix: use one of {known}")
        parameters = parameters or {}
        if not isinstance(parameters, dict):
            raise StudyError(f"{path}: parameters of '{name}' must be a mapping, got {type(parameters).__name__}")
        reserved = sorted(set(parameters) & set(RESERVED_PARAMETERS))
        if reserved:
            raise StudyError(f"{path}: '{name}' sets {reserved}, which the runner sets. Fix: remove them")
        steps.append(Step(notebook, parameters))
    return sorted(steps, key=lambda s: s.name)


def fingerprint(step: Step) -> str:
    """Hash of what determines a step's result: its parameters and its notebook's source cells."""
    nb = json.loads(step.notebook.read_text())
    sources = ["".join(c.get("source", "")) for c in nb.get("cells", [])]
    blob = json.dumps({"params": step.parameters, "sources": sources}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def set_aside_stale(run_dir: Path, fp: str) -> Path | None:
    """Move ``run_dir`` to ``outputs/runs/_stale/<study>/<step>-<time>/`` when it holds results
    of other params or notebook source (its STARTED/DONE fingerprint differs from ``fp``).

    Why: notebooks resume finished work found in their run directory (seeds, caches of
    results); results of other settings must neither be reused silently nor be deleted.
    A directory of the same fingerprint (an interrupted run) is kept, so it resumes.
    """
    recorded = [json.loads(f.read_text()).get("fingerprint") for f in (run_dir / STARTED_FILE, run_dir / DONE_FILE)
                if f.is_file()]
    if not run_dir.is_dir() or (recorded and all(r == fp for r in recorded)) or not any(run_dir.iterdir()):
        return None
    target = RUNS_DIR / STALE_DIR / run_dir.parent.name / f"{run_dir.name}-{time.strftime('%Y%m%dT%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    run_dir.rename(target)
    print(f"[study] {run_dir.name}: results of other settings moved to {target}", flush=True)
    return target


def run_study(params_file: str | Path, *, force: bool = False, kernel_name: str = "python3") -> Path:
    """Run every step of ``params_file`` not already finished; returns the study's run folder."""
    import papermill

    params_path = resolve_path(params_file)
    steps = load_study(params_path)
    study_dir = RUNS_DIR / params_path.stem
    redo_rest = force
    for step in steps:
        run_dir = study_dir / step.name
        done = run_dir / DONE_FILE
        fp = fingerprint(step)
        if not redo_rest and done.is_file() and json.loads(done.read_text()).get("fingerprint") == fp:
            print(f"[study] {step.name}: finished earlier, skipped ({done})")
            continue
        redo_rest = True  # later notebooks consume this one's results
        set_aside_stale(run_dir, fp)
        done.unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / STARTED_FILE, json.dumps({"fingerprint": fp}) + "\n")
        executed = run_dir / f"{step.name}.ipynb"
        print(f"[study] {step.name}: running -> {executed}", flush=True)
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(step.notebook), str(executed),
                parameters={**step.parameters, "run_dir": str(run_dir)},
                kernel_name=kernel_name, cwd=str(REPO_ROOT), progress_bar=False, log_output=False,
            )
        except papermill.PapermillExecutionError as err:
            raise StudyError(f"{step.name} failed ({err.ename}: {err.evalue}). The executed notebook with the "
                             f"traceback is {executed}. Fix the cause and rerun: finished steps are skipped") from err
        seconds = time.perf_counter() - start
        atomic_write_text(done, json.dumps({"fingerprint": fp, "seconds": round(seconds, 1),
                                            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        print(f"[study] {step.name}: done in {seconds:.0f} s", flush=True)
    return study_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run (or resume) the notebooks of a params file")
    p_run.add_argument("params", help="params/*.yaml")
    p_run.add_argument("--force", action="store_true", help="rerun every step, finished or not")
    p_list = sub.add_parser("list", help="show the steps of a params file and which are finished")
    p_list.add_argument("params")
    p_verify = sub.add_parser("verify", help="compare a finished run's results table with the README's")
    p_verify.add_argument("params", help="params/*.yaml whose run (outputs/runs/<stem>) is checked")
    p_verify.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    p_verify.add_argument("--tolerance", type=float, default=2.0, help="allowed difference in seed stds")
    args = parser.parse_args(argv)
    try:
        if args.command == "verify":
            from lib.verify import format_checks, verify_study

            checks = verify_study(RUNS_DIR / resolve_path(args.params).stem, args.readme, tolerance=args.tolerance)
            print(format_checks(checks))
            return 0 if all(c.agrees for c in checks) else 1
        if args.command == "run":
            out = run_study(args.params, force=args.force)
            print(f"[study] all steps finished; results in {out}")
        else:
            study_dir = RUNS_DIR / resolve_path(args.params).stem
            for step in load_study(args.params):
                done = (study_dir / step.name / DONE_FILE).is_file()
                print(f"{step.name:28s} {'done' if done else 'pending'}")
    except (StudyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
