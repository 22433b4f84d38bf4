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


@pytest.mark.slow
def test_failed_step_stops_the_chain_and_a_rerun_resumes_there(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
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
def test_a_cell_past_the_timeout_stops_the_chain_within_the_timeout(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
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
    timed_out = r"b_second timed out: cell \d/\d ran past the cell timeout of 4 s"
    with pytest.raises(study.StudyError, match=timed_out) as err:
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


def _mini_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> tuple[Path, Path]:
    notebooks, runs = tmp_path / "notebooks", tmp_path / "runs"
    notebooks.mkdir()
    for name in ("a_first", "b_second"):
        _write_notebook(notebooks / f"{name}.ipynb")
    monkeypatch.setattr(study, "NOTEBOOKS_DIR", notebooks)
    monkeypatch.setattr(study, "RUNS_DIR", runs)
    params = tmp_path / "mini.yaml"
    params.write_text(text)
    return params, runs


def test_a_misspelt_parameter_is_refused_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # papermill only warns "Passed unknown parameter" and runs the notebook on its default
    params, runs = _mini_study(tmp_path, monkeypatch, "a_first: {}\nb_second: {fial: true}\n")
    with pytest.raises(study.UnknownParameterError) as excinfo:
        study.run_study(params)
    error = excinfo.value
    assert isinstance(error, study.ActionableError) and error.notebook == "b_second" and error.keys == ["fial"]
    assert error.suggestions == {"fial": ["fail"]}
    assert str(params) in str(error) and "did you mean 'fail'?" in str(error) and "Fix:" in str(error)
    assert "run_dir" not in error.fix  # the runner's own parameter is not offered
    assert not runs.exists()  # not even the first, valid step ran

    assert study.main(["run", str(params)]) != 0
    err = capsys.readouterr().err
    assert err.startswith(f"error: {params}: notebook b_second has no parameter 'fial'") and "Traceback" not in err
    assert not runs.exists()


def test_a_real_notebook_parameter_typo_names_the_close_match(tmp_path: Path) -> None:
    params = tmp_path / "typo.yaml"
    params.write_text("03_lstm:\n  epochz: 5\n  cache_nam: smoke\n")
    with pytest.raises(study.UnknownParameterError, match=r"typo\.yaml: notebook 03_lstm has no parameter 'epochz' "
                                                          r"\(did you mean 'epochs'\?\), 'cache_nam' \(did you mean "
                                                          r"'cache_name'\?\)"):
        study.load_study(params)


def test_a_value_of_another_type_than_the_default_is_refused(tmp_path: Path) -> None:
    # `seeds: 0` would reach run_experiment as an int; the runner never coerces it
    params = tmp_path / "types.yaml"
    for text, message in [("seeds: 0", r"03_lstm\.seeds must be of type list, got int 0"),
                          ("epochs: true", r"03_lstm\.epochs must be of type int, got bool True"),
                          ("epochs: '5'", r"03_lstm\.epochs must be of type int, got str '5' \(YAML reads it as text"),
                          ("seeds:", r"03_lstm\.seeds must be of type list, got NoneType None"),
                          ("train_config: [1]", r"03_lstm\.train_config must be of type dict")]:
        params.write_text(f"03_lstm:\n  {text}\n")
        with pytest.raises(study.ParameterTypeError, match=message) as excinfo:
            study.load_study(params)
        assert str(params) in str(excinfo.value) and "Fix: give" in str(excinfo.value)
    params.write_text("03_lstm:\n  seeds: [0, 1]\n  epochs: 2\n")
    assert study.load_study(params)[0].parameters == {"seeds": [0, 1], "epochs": 2}


def test_yaml_syntax_errors_name_the_file_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "broken.yaml"
    params.write_text("03_lstm:\n  epochs: 3\n  seeds: [0, 1\n05_conv3d: {}\n")
    with pytest.raises(study.ParamsSyntaxError) as excinfo:
        study.load_study(params)
    assert (excinfo.value.line, excinfo.value.column) == (4, 10)
    assert str(excinfo.value).startswith(f"{params}: not valid YAML at line 4, column 10: ")
    assert excinfo.value.__suppress_context__  # no yaml traceback chained
    params.write_text("03_lstm:\n\tepochs: 3\n")  # a tab
    assert study.main(["list", str(params)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {params}: not valid YAML at line 2, column 1") and "Traceback" not in err
    params.write_bytes(b"03_lstm:\n  epochs: \xff\n")
    with pytest.raises(study.StudyError, match="not UTF-8"):
        study.load_study(params)
    params.write_text("- 03_lstm\n")
    with pytest.raises(study.StudyError, match="the top level is a list, not a mapping"):
        study.load_study(params)
