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

The optional ``runner`` section sets the limits that keep a run from hanging silently (see
:mod:`lib.notebook_runner`)::

    runner:
      cell_timeout_s: 1800       # any one cell; the default is DEFAULT_CELL_TIMEOUT_S
      notebook_timeout_s: 3600   # one notebook, all its cells; default DEFAULT_NOTEBOOK_TIMEOUT_S
      steps:                     # per-notebook overrides of the two
        02_latent_cache: {cell_timeout_s: 7200, notebook_timeout_s: 7200}

Before anything runs, every notebook's parameters are checked against the ones it declares in
its tagged ``parameters`` cell (papermill itself only warns about an unknown one and runs the
notebook on its default): an unknown key is an :class:`UnknownParameterError` with the closest
declared names, and a value of another type than the notebook's default (``seeds: 0`` where the
notebook declares ``seeds: list = [0]``) a :class:`ParameterTypeError`; values are never coerced,
so what a params file says is what the notebook receives. ``int`` is accepted for ``float``.

A cell that runs past either limit is interrupted and stops the chain like a failure. While a
step runs, a line per finished cell and a status line (the running cell, its time, the library's
progress bar) keep the console informed; at the end a summary lists every step, where the results
are and the headline table. The kernel's own output goes to ``kernel.log`` in the run directory.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lib.errors import ActionableError
from lib.paths import NOTEBOOKS_DIR, REPO_ROOT, RUNS_DIR, resolve_path
from lib.runs import atomic_write_text, declared_parameters

RUNNER_KEY = "runner"  # the params file's section of runner settings (not a notebook)
DEFAULT_CELL_TIMEOUT_S = 6 * 3600.0  # long enough for a UCF101 cache build on a GPU; a hang ends here
DEFAULT_NOTEBOOK_TIMEOUT_S = 12 * 3600.0
HEARTBEAT_S = 20.0  # a status line at least this often when the console is not a terminal
KERNEL_LOG = "kernel.log"
DONE_FILE = "DONE.json"
STARTED_FILE = "STARTED.json"  # fingerprint of the settings a step's run directory was started with
STALE_DIR = "_stale"  # under RUNS_DIR: run directories of superseded settings (kept, never reused)
RESERVED_PARAMETERS = ("run_dir",)  # set by the runner, never by a params file


class StudyError(ActionableError):
    """A params file that cannot be run (unknown notebook, bad structure) or a failed step.
    ``path`` is the params file (None for a step's failure, whose reason names its notebook)."""


class ParamsSyntaxError(StudyError):
    """A params file that is not valid YAML; ``line`` and ``column`` (1-based) say where, when known."""

    def __init__(self, path: Path, problem: str, line: int | None, column: int | None) -> None:
        self.line, self.column = line, column
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(path, f"not valid YAML{where}: {problem}",
                         "correct the syntax there; the file maps notebook names to mappings of their parameters")


class UnknownParameterError(StudyError):
    """A params file gives a notebook parameters it does not declare (papermill would only warn)."""

    def __init__(self, path: Path, notebook: str, keys: list[str], declared: list[str]) -> None:
        self.notebook, self.keys = notebook, keys
        self.suggestions = {key: difflib.get_close_matches(key, declared, n=1) for key in keys}
        named = ", ".join(repr(key) + (f" (did you mean {close[0]!r}?)" if close else "")
                          for key, close in self.suggestions.items())
        super().__init__(path, f"notebook {notebook} has no parameter {named}",
                         f"use the names it declares: {declared}")


class ParameterTypeError(StudyError):
    """A params value whose type differs from the notebook's default (papermill injects it as is)."""


@dataclass(frozen=True)
class Step:
    """One notebook of a study, its parameters and the runner's limits for it."""

    notebook: Path
    parameters: dict[str, Any]
    cell_timeout_s: float = DEFAULT_CELL_TIMEOUT_S
    notebook_timeout_s: float = DEFAULT_NOTEBOOK_TIMEOUT_S

    @property
    def name(self) -> str:
        return self.notebook.stem


_LIMITS = ("cell_timeout_s", "notebook_timeout_s")
# papermill's inferred type of a notebook default -> the types a params value may have
_ACCEPTED_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
                                                "list": (list,), "dict": (dict,)}


def _limits(path: Path, section: Any, where: str) -> dict[str, float]:
    if not isinstance(section, dict):
        raise StudyError(path, f"{where} must be a mapping, got {type(section).__name__}",
                         f"write {where} as a mapping of {list(_LIMITS)}")
    unknown = sorted(set(section) - set(_LIMITS) - ({"steps"} if where == RUNNER_KEY else set()))
    if unknown:
        raise StudyError(path, f"{where} has unknown keys {unknown}", f"use {list(_LIMITS)}")
    limits = {k: section[k] for k in _LIMITS if k in section}
    for key, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise StudyError(path, f"{where}.{key} must be a positive number of seconds, got {value!r}",
                             f"give {where}.{key} a number of seconds above 0")
    return {k: float(v) for k, v in limits.items()}


def read_params_file(path: Path) -> dict[str, Any]:
    """The top-level mapping of the params file ``path``; a file that is missing, unreadable or not
    a YAML mapping is a :class:`StudyError` (:class:`ParamsSyntaxError` naming line and column)."""
    if not path.is_file():
        known = sorted(p.name for p in (REPO_ROOT / "params").glob("*.yaml"))
        raise StudyError(path, "params file not found", f"pass one of {known}")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise StudyError(path, f"not UTF-8 text ({err.reason} at byte {err.start})", "save it as UTF-8 YAML") from None
    except yaml.MarkedYAMLError as err:
        mark, context = err.problem_mark or err.context_mark, err.context_mark
        problem = err.problem or "cannot be parsed"
        if err.context and context is not None:  # where the construct that stays open began
            problem += f" ({err.context} at line {context.line + 1}, column {context.column + 1})"
        raise ParamsSyntaxError(path, problem, mark.line + 1 if mark else None,
                                mark.column + 1 if mark else None) from None
    except yaml.YAMLError as err:
        raise ParamsSyntaxError(path, str(err), None, None) from None
    if not isinstance(content, dict):
        raise StudyError(path, f"the top level is a {type(content).__name__}, not a mapping",
                         "map notebook names to mappings of their parameters")
    return content


def check_parameters(path: Path, notebook: Path, parameters: dict[str, Any]) -> None:
    """Refuse ``parameters`` that ``notebook`` does not declare, or whose value has another type than
    the notebook's default (see the module docstring); ``path`` is the params file they come from."""
    declared = declared_parameters(notebook)
    names = [name for name in declared if name not in RESERVED_PARAMETERS]
    unknown = [key for key in parameters if key not in declared]
    if unknown:
        raise UnknownParameterError(path, notebook.stem, unknown, names)
    for key, value in parameters.items():
        type_name = str(declared[key].get("inferred_type_name") or "")
        accepted = _ACCEPTED_TYPES.get(type_name)
        if accepted is None or _has_type(value, accepted):
            continue  # a type beyond the plain ones (e.g. "str | None") is the notebook's to check
        numeric_text = isinstance(value, str) and type_name in ("int", "float")
        hint = " (YAML reads it as text; write e.g. 1.0e-3, with a decimal point)" if numeric_text else ""
        got, default = f"{type(value).__name__} {value!r}{hint}", declared[key].get("default")
        raise ParameterTypeError(path, f"{notebook.stem}.{key} must be of type {type_name}, got {got}",
                                 f"give {key} a {type_name} value like the notebook's default {default}")


def _has_type(value: Any, accepted: tuple[type, ...]) -> bool:
    """``isinstance`` except that a bool is not an int (YAML's ``yes``/``true`` is never a count)."""
    return bool in accepted if isinstance(value, bool) else isinstance(value, accepted)


def load_study(params_file: str | Path) -> list[Step]:
    """Parse a params file into ordered steps, every notebook's parameters checked against the ones
    it declares; errors name the file and the offending notebook and key."""
    path = resolve_path(params_file)
    content = read_params_file(path)
    runner = content.pop(RUNNER_KEY, None) or {}
    limits = _limits(path, runner, RUNNER_KEY)
    per_step = runner.get("steps") or {}
    if not isinstance(per_step, dict) or not set(per_step) <= set(content):
        raise StudyError(path, f"{RUNNER_KEY}.steps must map notebooks of this file to limits, got {per_step!r}",
                         f"name only notebooks listed in {path.name}")
    steps = []
    for name, parameters in content.items():
        notebook = NOTEBOOKS_DIR / f"{name}.ipynb"
        if not notebook.is_file():
            known = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
            raise StudyError(path, f"'{name}' is not a notebook in {NOTEBOOKS_DIR}", f"use one of {known}")
        parameters = parameters or {}
        if not isinstance(parameters, dict):
            raise StudyError(path, f"parameters of '{name}' must be a mapping, got {type(parameters).__name__}",
                             f"write '{name}:' followed by indented 'key: value' lines")
        reserved = sorted(set(parameters) & set(RESERVED_PARAMETERS))
        if reserved:
            raise StudyError(path, f"'{name}' sets {reserved}, which the runner sets", "remove them")
        check_parameters(path, notebook, parameters)
        step_limits = {**limits, **_limits(path, per_step.get(name) or {}, f"{RUNNER_KEY}.steps.{name}")}
        steps.append(Step(notebook, parameters, **step_limits))
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


@dataclass
class StepReport:
    """What happened to one step in this invocation, for the closing summary."""

    name: str
    status: str  # finished | skipped (finished earlier) | failed | timed out | not run
    seconds: float | None
    executed: Path


def run_study(params_file: str | Path, *, force: bool = False, kernel_name: str = "python3",
              stream: Any = None) -> Path:
    """Run every step of ``params_file`` not already finished; returns the study's run folder.

    Progress and the closing summary go to ``stream`` (stdout)."""
    from papermill import PapermillExecutionError

    from lib.notebook_runner import ConsoleSpec, NotebookTimeout, RunLimits, execute_notebook

    out = stream or sys.stdout
    params_path = resolve_path(params_file)
    steps = load_study(params_path)
    study_dir = RUNS_DIR / params_path.stem
    reports = [StepReport(s.name, "not run", None, study_dir / s.name / f"{s.name}.ipynb") for s in steps]
    redo_rest = force
    started = time.perf_counter()
    try:
        for step, report in zip(steps, reports):
            run_dir = study_dir / step.name
            done = run_dir / DONE_FILE
            fp = fingerprint(step)
            if not redo_rest and done.is_file() and json.loads(done.read_text()).get("fingerprint") == fp:
                print(f"[study] {step.name}: finished earlier, skipped ({done})", file=out, flush=True)
                report.status, report.seconds = "skipped", json.loads(done.read_text()).get("seconds")
                continue
            redo_rest = True  # later notebooks consume this one's results
            set_aside_stale(run_dir, fp)
            done.unlink(missing_ok=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / STARTED_FILE, json.dumps({"fingerprint": fp}) + "\n")
            executed = report.executed
            print(f"[study] {step.name}: running -> {executed} (limits: {step.cell_timeout_s:.0f} s per cell, "
                  f"{step.notebook_timeout_s:.0f} s per notebook)", file=out, flush=True)
            start = time.perf_counter()
            try:
                execute_notebook(step.notebook, executed, parameters={**step.parameters, "run_dir": str(run_dir)},
                                 name=step.name, limits=RunLimits(step.cell_timeout_s, step.notebook_timeout_s),
                                 cwd=REPO_ROOT, kernel_name=kernel_name, console=ConsoleSpec(out, HEARTBEAT_S),
                                 kernel_log=run_dir / KERNEL_LOG)
            except NotebookTimeout as err:
                report.status, report.seconds = "timed out", time.perf_counter() - start
                raise StudyError(None, f"{step.name} timed out: {err}. The executed notebook, with the interrupted "
                                       f"cell's traceback, is {executed}",
                                 f"if the work is legitimately longer, raise the limit in the '{RUNNER_KEY}' section "
                                 f"of {params_path}; rerun: finished steps are skipped") from err
            except PapermillExecutionError as err:
                report.status, report.seconds = "failed", time.perf_counter() - start
                raise StudyError(None, f"{step.name} failed ({err.ename}: {err.evalue}). The executed notebook with "
                                       f"the traceback is {executed}",
                                 "correct the cause and rerun: finished steps are skipped") from err
            seconds = time.perf_counter() - start
            report.status, report.seconds = "finished", seconds
            atomic_write_text(done, json.dumps({"fingerprint": fp, "seconds": round(seconds, 1),
                                                "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
            print(f"[study] {step.name}: done in {seconds:.0f} s", file=out, flush=True)
    finally:
        print(format_summary(reports, study_dir, time.perf_counter() - started), file=out, flush=True)
    return study_dir


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def format_summary(reports: list[StepReport], study_dir: Path, seconds: float) -> str:
    """One screen: each step's status and time, where the outputs are, and the headline table."""
    lines = ["", f"[study] summary of {study_dir.name} ({_duration(seconds)} in this run)"]
    for r in reports:
        inside = r.executed.is_relative_to(REPO_ROOT)
        where = (os.path.relpath(r.executed, REPO_ROOT) if inside else str(r.executed)) if r.status != "not run" else ""
        lines.append(f"  {r.name:22s} {r.status:10s} {_duration(r.seconds):>12s}  {where}")
    lines.append(f"  outputs: {study_dir} (executed notebooks, figures/, metrics.json per step; "
                 "kernel.log: kernel output)")
    table = _headline_lines(study_dir) if any(r.status in ("finished", "skipped") for r in reports) else []
    return "\n".join(lines + table)


def _headline_lines(study_dir: Path, max_rows: int = 16) -> list[str]:
    """The study's accuracy table (video top-1 %, mean ± std over seeds) as aligned text, if any model ran."""
    try:
        from lib.classify import views

        frame = views.study_frame(study_dir)
        if frame.empty:
            return []
        table = views.headline_table(frame)[["model", "input", "seeds", "val", "test (video)", "published test"]]
    except Exception as err:  # noqa: BLE001 - the summary never hides the run's own outcome
        return [f"  (no results table: {type(err).__name__}: {err})"]
    shown = table.head(max_rows).to_string(index=False)
    more = [f"  ... {len(table) - max_rows} more rows in 07_compare"] if len(table) > max_rows else []
    rows = ["    " + line for line in shown.splitlines()]
    return ["  results (video-level top-1 %, mean ± std over seeds):", *rows, *more]


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
