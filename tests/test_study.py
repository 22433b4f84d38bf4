"""The study runner (`make study`): a failing notebook stops the chain with its executed copy (the
traceback inside) saved; a rerun skips finished steps and resumes at the failed one.

Runs three two-cell notebooks with papermill on the `python3` kernel (`make venv` installs it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from lib import study


def _write_notebook(path: Path) -> None:
    parameters = nbformat.v4.new_code_cell('fail: bool = False  # raise in the next cell\nrun_dir: str = ""')
    parameters.metadata["tags"] = ["parameters"]
    work = nbformat.v4.new_code_cell(
        "from pathlib import Path\n"
        "assert not fail, 'asked to fail'\n"
        "out = Path(run_dir) / 'ran.txt'\n"
        "out.write_text(str(int(out.read_text()) + 1 if out.exists() else 1))")
    notebook = nbformat.v4.new_notebook(cells=[parameters, work])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


def test_failed_step_stops_the_chain_and_a_rerun_resumes_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebooks, runs = tmp_path / "notebooks", tmp_path / "runs"
    notebooks.mkdir()
    for name in ("a_first", "b_second", "c_third"):
        _write_notebook(notebooks / f"{name}.ipynb")
    monkeypatch.setattr(study, "NOTEBOOKS_DIR", notebooks)
    monkeypatch.setattr(study, "RUNS_DIR", runs)
    params = tmp_path / "mini.yaml"
    params.write_text("a_first: {}\nb_second: {fail: true}\nc_third: {}\n")

    with pytest.raises(study.StudyError, match=r"b_second failed \(AssertionError: asked to fail\).*b_second\.ipynb"):
        study.run_study(params)
    study_dir = runs / "mini"
    assert (study_dir / "a_first" / study.DONE_FILE).is_file()
    failed_copy = study_dir / "b_second" / "b_second.ipynb"
    assert "asked to fail" in failed_copy.read_text()  # the executed notebook keeps the traceback
    assert not (study_dir / "b_second" / study.DONE_FILE).exists()
    assert not (study_dir / "c_third").exists()  # the chain stopped

    first_done = (study_dir / "a_first" / study.DONE_FILE).read_text()
    params.write_text("a_first: {}\nb_second: {fail: false}\nc_third: {}\n")
    assert study.run_study(params) == study_dir
    assert (study_dir / "a_first" / study.DONE_FILE).read_text() == first_done  # skipped, not rerun
    assert (study_dir / "a_first" / "ran.txt").read_text() == "1"
    for name in ("b_second", "c_third"):
        assert json.loads((study_dir / name / study.DONE_FILE).read_text())["fingerprint"]
        assert (study_dir / name / "ran.txt").read_text() == "1"
    set_aside = list((runs / study.STALE_DIR / "mini").glob("b_second*/b_second.ipynb"))
    assert len(set_aside) == 1 and "asked to fail" in set_aside[0].read_text()  # other params: kept aside, not reused


def _write_sleeping_notebook(path: Path) -> None:
    parameters = nbformat.v4.new_code_cell('sleep_s: float = 0.0  # seconds the second cell sleeps\nrun_dir: str = ""')
    parameters.metadata["tags"] = ["parameters"]
    sleep = nbformat.v4.new_code_cell("import time\ntime.sleep(sleep_s)")
    notebook = nbformat.v4.new_notebook(cells=[parameters, sleep])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


@pytest.mark.slow
def test_a_cell_past_the_timeout_stops_the_chain_within_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import time

    notebooks, runs = tmp_path / "notebooks", tmp_path / "runs"
    notebooks.mkdir()
    for name in ("a_first", "b_second", "c_third"):
        _write_sleeping_notebook(notebooks / f"{name}.ipynb")
    monkeypatch.setattr(study, "NOTEBOOKS_DIR", notebooks)
    monkeypatch.setattr(study, "RUNS_DIR", runs)
    monkeypatch.setattr(study, "HEARTBEAT_S", 1.0)
    params = tmp_path / "slow.yaml"
    params.write_text("runner: {cell_timeout_s: 4}\na_first: {sleep_s: 2.5}\nb_second: {sleep_s: 600}\nc_third: {}\n")
    console = io.StringIO()

    start = time.monotonic()
    with pytest.raises(study.StudyError, match=r"b_second timed out: cell \d/\d ran past the cell timeout of 4 s") as err:
        study.run_study(params, stream=console)
    assert time.monotonic() - start < 60  # the 600 s cell was stopped at its 4 s limit (plus kernel start/stop)
    assert "runner" in str(err.value) and "b_second.ipynb" in str(err.value)
    executed = (runs / "slow" / "b_second" / "b_second.ipynb").read_text()
    assert "CellTimeout" in executed and "KeyboardInterrupt" in executed  # named, with where the kernel was
    assert not (runs / "slow" / "b_second" / study.DONE_FILE).exists() and not (runs / "slow" / "c_third").exists()

    log = console.getvalue()
    assert re.search(r"\[study\] a_first cell 3/3 import time +2\.\d s\n", log)  # a line per cell, with its time
    assert re.search(r"\[study\] a_first cell 3/3 import time \(running \ds\)", log)  # the heartbeat inside a long cell
    assert "TIMED OUT" in log and "Kernel is running over TCP" not in log
    summary = log[log.index("[study] summary of slow"):]
    assert re.search(r"a_first +finished", summary) and re.search(r"b_second +timed out", summary)
    assert re.search(r"c_third +not run", summary)
