"""Every params file names real notebooks and only parameters those notebooks declare.

papermill only warns about unknown parameters, so a typo in a params file would silently run the
notebook on its default; this test makes it fail instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lib.classify.config import TrainConfig
from lib.models import list_models
from lib.models.registry import make_config, model_info
from lib.paths import NOTEBOOKS_DIR, PARAMS_DIR
from lib.runs import declared_parameters
from lib.study import RESERVED_PARAMETERS, RUNNER_KEY, StudyError, load_study
from lib.zoo.study import LINEAR_PROBE

PARAMS_FILES = sorted(PARAMS_DIR.glob("*.yaml"))


def test_there_are_params_files() -> None:
    assert {p.name for p in PARAMS_FILES} >= {"default.yaml", "ucf101_reducio.yaml"}


@pytest.mark.parametrize("params_file", PARAMS_FILES, ids=[p.name for p in PARAMS_FILES])
def test_params_match_notebook_parameters(params_file: Path) -> None:
    content = yaml.safe_load(params_file.read_text())
    assert isinstance(content, dict) and content, f"{params_file} is empty"
    content.pop(RUNNER_KEY, None)  # the runner's limits, checked by load_study
    load_study(params_file)
    for notebook_name, values in content.items():
        notebook = NOTEBOOKS_DIR / f"{notebook_name}.ipynb"
        assert notebook.is_file(), f"{params_file}: no notebook {notebook}"
        declared = declared_parameters(notebook)
        unknown = sorted(set(values or {}) - set(declared))
        assert not unknown, (f"{params_file}: {notebook_name} has no parameters {unknown}; "
                             f"it declares {sorted(declared)}")
        assert not set(values or {}) & set(RESERVED_PARAMETERS)
        # a params value must have the type of the notebook's default (papermill injects it as is)
        for key, value in (values or {}).items():
            default_type = declared[key]["inferred_type_name"]
            if default_type in ("str", "int", "float", "bool") and value is not None:
                expected = {"str": str, "int": int, "float": (int, float), "bool": bool}[default_type]
                assert isinstance(value, expected), (f"{params_file}: {notebook_name}.{key}={value!r} "
                                                     f"is not {default_type}")



@pytest.mark.parametrize("params_file", PARAMS_FILES, ids=[p.name for p in PARAMS_FILES])
def test_params_models_overrides_and_train_configs_are_valid(params_file: Path) -> None:
    # a typo in a model name, a config field or a TrainConfig key would otherwise surface only
    # when the study reaches that notebook, possibly after an hour of encoding
    content = yaml.safe_load(params_file.read_text())
    content.pop(RUNNER_KEY, None)
    for notebook_name, values in content.items():
        values = values or {}
        names = [*values.get("models", []), *values.get("pixel_models", []), *values.get("pooled_models", []),
                 *(h for h in values.get("heads", []) if h != LINEAR_PROBE)]
        assert set(names) <= set(list_models()), f"{params_file}: {notebook_name} names unknown models"
        for name, fields in (values.get("model_overrides") or {}).items():
            make_config(name, fields, origin=params_file)  # raises ModelConfigError naming the field
            assert name in names, f"{params_file}: {notebook_name} overrides {name!r}, which it does not train"
        for name in names:
            TrainConfig.from_mapping(model_info(name).recipe, **(values.get("train_config") or {}))

def test_every_notebook_takes_a_run_dir() -> None:
    for notebook in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        assert "run_dir" in declared_parameters(notebook), f"{notebook.name} lacks a run_dir parameter"


def test_study_loader_rejects_unknown_notebook_and_reserved_keys(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("99_no_such_notebook:\n  x: 1\n")
    with pytest.raises(StudyError, match="99_no_such_notebook"):
        load_study(bad)
    first = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))[0].stem
    bad.write_text(f"{first}:\n  run_dir: /tmp/x\n")
    with pytest.raises(StudyError, match="run_dir"):
        load_study(bad)
    bad.write_text(f"{RUNNER_KEY}:\n  cell_timeout: 10\n{first}: {{}}\n")
    with pytest.raises(StudyError, match="cell_timeout"):
        load_study(bad)
    bad.write_text(f"{RUNNER_KEY}:\n  cell_timeout_s: 0\n{first}: {{}}\n")
    with pytest.raises(StudyError, match="positive"):
        load_study(bad)


def test_runner_limits_have_defaults_and_per_step_overrides(tmp_path: Path) -> None:
    from lib.study import DEFAULT_CELL_TIMEOUT_S, DEFAULT_NOTEBOOK_TIMEOUT_S

    first, second = [p.stem for p in sorted(NOTEBOOKS_DIR.glob("*.ipynb"))[:2]]
    params = tmp_path / "limits.yaml"
    params.write_text(f"{first}: {{}}\n{second}: {{}}\n")
    assert [(s.cell_timeout_s, s.notebook_timeout_s) for s in load_study(params)] == [
        (DEFAULT_CELL_TIMEOUT_S, DEFAULT_NOTEBOOK_TIMEOUT_S)] * 2
    params.write_text(f"{RUNNER_KEY}:\n  cell_timeout_s: 60\n  notebook_timeout_s: 120\n"
                      f"  steps:\n    {second}: {{cell_timeout_s: 90}}\n{first}: {{}}\n{second}: {{}}\n")
    assert [(s.cell_timeout_s, s.notebook_timeout_s) for s in load_study(params)] == [(60, 120), (90, 120)]


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS_DIR.glob("*.ipynb")), ids=lambda p: p.stem)
def test_papermill_sees_every_parameter(notebook: Path) -> None:
    # papermill silently drops a parameter line it cannot parse (e.g. an '=' inside the comment),
    # and then "passes an unknown parameter" that the notebook never receives.
    import ast
    import json

    cells = [c for c in json.loads(notebook.read_text())["cells"]
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    assigned = [node.target.id if isinstance(node, ast.AnnAssign) else node.targets[0].id
                for node in ast.parse("".join(cells[0]["source"])).body
                if isinstance(node, (ast.Assign, ast.AnnAssign))]
    declared = declared_parameters(notebook)
    assert list(declared) == assigned
    assert all(p["inferred_type_name"] != "None" for p in declared.values()), "annotate every parameter with its type"
