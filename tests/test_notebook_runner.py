"""lib.notebook_runner and the 07 hang: widget cells executed headless never wait for ever.

The hang: nbclient mimics the Output widget by sending messages on the shell socket while it waits
on that socket for the cell's reply; the send can take the socket's wake-up, and a wait without a
bound then never ends though the reply is there. A cell whose output goes into an Output widget
through ``with out:`` triggers it; on this 2-core machine beside a busy kernel, 40 such cells lose
3-7 replies per run with plain papermill (each recovered here only by the cell timeout), none with
the runner's bounded polls.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from lib import notebook_runner
from lib.paths import NOTEBOOKS_DIR, REPO_ROOT

CAPTURED_CELL = """out = widgets.Output()
for i in range(10):
    with out:
        print(i)
display(out)"""


def _captured_output_notebook(path: Path, cells: int = 40) -> None:
    sources = ["import ipywidgets as widgets\nfrom IPython.display import display"] + [CAPTURED_CELL] * cells
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


def _durations(executed: Path) -> list[float]:
    cells = json.loads(executed.read_text())["cells"]
    return [c["metadata"]["papermill"]["duration"] for c in cells if c["cell_type"] == "code"]


def test_ipc_kernel_manager_keeps_its_sockets_in_a_private_folder() -> None:
    manager = notebook_runner.IPCKernelManager(kernel_name="python3")
    assert manager.transport == "ipc"
    assert Path(manager.ip).parent.name.startswith("lvs-kernel-") and len(manager.ip) < 80
    assert manager.client_factory is notebook_runner.StudyKernelClient
    assert manager.client().shell_channel_class is notebook_runner.SlicedSocketChannel


def test_tqdm_bars_are_read_from_widget_states() -> None:
    states = {
        "b" * 32: {"_model_name": "HBoxModel", "children": [f"IPY_MODEL_{c * 32}" for c in "lpr"]},
        "l" * 32: {"_model_name": "HTMLModel", "value": "encode:\u2007100%"},
        "p" * 32: {"_model_name": "FloatProgressModel", "value": 4, "max": 4},
        "r" * 32: {"_model_name": "HTMLModel", "value": "\u20074/4\u2007[00:02&lt;00:00,\u20071.9video/s]"},
    }
    boxes = notebook_runner.tqdm_boxes(states)
    assert list(boxes) == ["b" * 32]
    assert notebook_runner.tqdm_text(states, boxes["b" * 32]) == "encode: 100% 4/4 [00:02<00:00, 1.9video/s]"


def test_run_limits_are_positive_seconds() -> None:
    limits = notebook_runner.RunLimits(cell_timeout_s=20, notebook_timeout_s=300.5)
    assert (limits.cell_timeout_s, limits.notebook_timeout_s) == (20, 300.5)
    for bad in (0, -1, True, "60"):
        with pytest.raises(ValueError, match="positive number of seconds"):
            notebook_runner.RunLimits(cell_timeout_s=bad, notebook_timeout_s=300)  # type: ignore[arg-type]


@pytest.mark.slow
def test_captured_widget_output_cells_never_wait_for_a_lost_reply(tmp_path: Path, busy_kernel: object) -> None:
    notebook, executed = tmp_path / "captured.ipynb", tmp_path / "captured.out.ipynb"
    _captured_output_notebook(notebook)
    notebook_runner.execute_notebook(notebook, executed, parameters={}, name="captured",
                                     limits=notebook_runner.RunLimits(cell_timeout_s=20, notebook_timeout_s=300),
                                     cwd=tmp_path, kernel_log=tmp_path / "kernel.log")
    slowest = max(_durations(executed))
    assert slowest < 10, f"a cell took {slowest:.1f} s: its reply was lost and found only by the cell timeout"
    assert "TCP" not in (tmp_path / "kernel.log").read_text()  # IPC transport: no transport warning


@pytest.mark.slow
def test_07_under_papermill_beside_a_busy_kernel(tiny_study: Path, study_vae: tuple[str, str], tmp_path: Path,
                                                 busy_kernel: object) -> None:
    """Plain papermill (no runner), as a user reproducing a result runs it; a hang fails at the timeout."""
    import papermill

    executed = tmp_path / "07_compare.ipynb"
    papermill.execute_notebook(str(NOTEBOOKS_DIR / "07_compare.ipynb"), str(executed), kernel_name="python3",
                               parameters={"study_dir": str(tiny_study), "cache_name": study_vae[1],
                                           "run_dir": str(tmp_path)},
                               cwd=str(REPO_ROOT), progress_bar=False, execution_timeout=240)
    nb = json.loads(executed.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1 and "image/png" in views[0]["data"]  # the view, with its static picture
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert views[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] in state
    assert max(_durations(executed)) < 180
