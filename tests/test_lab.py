"""lib.lab: a notebook saved from JupyterLab lands in the run directory its outputs name."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from lib import lab, tables


class _Run:
    def __init__(self, path: Path) -> None:
        self.path = path


def _saved_notebook(run_dir: Path | None) -> dict:
    cells = [nbformat.v4.new_code_cell("run = open_run(...)")]
    if run_dir is not None:
        data, metadata = tables.run_note(_Run(run_dir))._repr_mimebundle_()
        cells[0].outputs = [nbformat.v4.new_output("display_data", data=data, metadata=metadata)]
    return nbformat.v4.new_notebook(cells=cells)


def test_a_notebook_saved_through_the_contents_manager_is_copied_into_its_run_dir(tmp_path: Path) -> None:
    from jupyter_server.services.contents.filemanager import FileContentsManager

    run_dir = tmp_path / "outputs" / "runs" / "adhoc" / "01_reconstruction"
    run_dir.mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    manager = FileContentsManager(root_dir=str(tmp_path), post_save_hook="lib.lab.copy_to_run_dir")
    manager.save({"type": "notebook", "format": "json", "content": _saved_notebook(run_dir)},
                 "notebooks/01_reconstruction.ipynb")
    copied = json.loads((run_dir / "01_reconstruction.ipynb").read_text())
    assert copied["cells"][0]["outputs"][0]["metadata"][tables.METADATA_KEY]["run_dir"] == str(run_dir)

    manager.save({"type": "notebook", "format": "json", "content": _saved_notebook(None)}, "notebooks/other.ipynb")
    assert sorted(p.name for p in run_dir.iterdir()) == ["01_reconstruction.ipynb"]  # no run directory named: no copy


def test_a_notebook_saved_in_its_own_run_dir_or_pointing_nowhere_is_left_alone(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    inside = run_dir / "x.ipynb"
    inside.write_text(json.dumps(_saved_notebook(run_dir)))
    assert lab.copy_to_run_dir({"type": "notebook"}, str(inside)) is None
    elsewhere = tmp_path / "y.ipynb"
    elsewhere.write_text(json.dumps(_saved_notebook(tmp_path / "missing")))
    assert lab.copy_to_run_dir({"type": "notebook"}, str(elsewhere)) is None
    broken = tmp_path / "z.ipynb"
    broken.write_text("{not json")
    assert lab.copy_to_run_dir({"type": "notebook"}, str(broken)) is None  # a failing copy never fails the save


def test_install_writes_the_server_hook_and_keeps_other_settings(tmp_path: Path) -> None:
    overrides = tmp_path / lab.LAB_OVERRIDES
    overrides.parent.mkdir(parents=True)
    overrides.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}))
    (tmp_path / lab.SERVER_CONFIG).parent.mkdir(parents=True)
    (tmp_path / lab.SERVER_CONFIG).write_text(json.dumps({"ServerApp": {"open_browser": False}}))
    lab.install(tmp_path)
    server = json.loads((tmp_path / lab.SERVER_CONFIG).read_text())
    assert server == {"ServerApp": {"open_browser": False},
                      "ContentsManager": {"post_save_hook": "lib.lab.copy_to_run_dir"}}
    merged = json.loads(overrides.read_text())
    assert merged[lab.WIDGETS_PLUGIN] == {"saveState": True}
    assert "theme" in merged["@jupyterlab/apputils-extension:themes"]


def test_a_jupyter_server_started_from_the_prefix_reads_the_hook(tmp_path: Path, monkeypatch) -> None:
    import jupyter_core.paths
    from jupyter_server.serverapp import ServerApp

    lab.install(tmp_path)
    monkeypatch.setattr(jupyter_core.paths, "jupyter_config_path", lambda: [str(tmp_path / "etc" / "jupyter")])
    monkeypatch.setattr(ServerApp, "config_file_paths", property(lambda self: [str(tmp_path / "etc" / "jupyter")]))
    app = ServerApp()
    app.load_config_file()
    assert app.config.ContentsManager.post_save_hook == "lib.lab.copy_to_run_dir"
