"""Executing one notebook for the study runner: a kernel that cannot hang the run, limits, progress.

:func:`execute_notebook` is ``papermill.execute_notebook`` with four differences:

- **The kernel talks over IPC** (Unix sockets in a private temporary folder, not TCP ports on
  localhost), so kernels of a JupyterLab running beside the study cannot collide with it and the
  kernel prints no transport warning.
- **The client never waits on a socket without a bound.** nbclient mimics the Output widget by
  sending ``comm_msg`` on the shell socket while it waits on that same socket for the cell's
  ``execute_reply``; pyzmq's edge-triggered wake-up can then be consumed by the send, and a
  ``get_msg(timeout=None)`` waits forever although the reply has arrived (the kernel is idle,
  the client waits: the 07 hang). :class:`SlicedSocketChannel` polls in short slices, and each
  new poll sees a message that is already there.
- **Limits**: a per-cell timeout and a per-notebook wall limit. A cell that runs past either is
  interrupted (so its traceback shows where it was), the executed copy is kept, and the run
  fails with :class:`NotebookTimeout` naming the cell.
- **Progress**: one line per executed cell with its time, a status line (updated in place in a
  terminal, printed every ``heartbeat_s`` otherwise) naming the running cell and the library's
  progress bar inside it (read from the tqdm widgets' comm messages), so a long cell is never
  silent. In the executed copy, a finished progress bar reads as its final text and closed bars
  (``leave=False``) are dropped; the widget state of what remains is saved in the notebook.
  Stream output is coalesced (one stdout and one stderr output per cell, carriage-return
  rewrites resolved), so a text progress bar leaves its last line, not thousands.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from queue import Empty
from typing import IO, Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_output
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from traitlets import CaselessStrEnum, DottedObjectName, Type

from lib.errors import ActionableError

ENGINE_NAME = "lvs-study"
POLL_SLICE_S = 0.5  # longest wait on one socket poll; a missed wake-up costs at most this
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
TIMEOUT_ENAME = "CellTimeout"
DEAD_KERNEL_ENAME = "KernelDied"


class NotebookTimeout(ActionableError):
    """A cell ran past the per-cell timeout or the notebook's wall limit (the study runner turns it
    into a StudyError naming the params file's limit)."""


# ---- the kernel and its client ---------------------------------------------------------------------
class SlicedSocketChannel(AsyncZMQSocketChannel):
    """A kernel channel whose ``get_msg`` polls in slices of :data:`POLL_SLICE_S` seconds.

    Same contract as the base class (a message, or :class:`queue.Empty` after ``timeout``
    seconds; ``None`` waits for ever), but no single poll waits longer than a slice: a message
    whose wake-up was lost is picked up by the next poll instead of never.
    """

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:  # type: ignore[override]
        assert self.socket is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = POLL_SLICE_S if deadline is None else min(POLL_SLICE_S, max(0.0, deadline - time.monotonic()))
            if await self.socket.poll(int(wait * 1000)):
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty


class StudyKernelClient(AsyncKernelClient):
    """An async kernel client whose request channels are :class:`SlicedSocketChannel`."""

    shell_channel_class = Type(SlicedSocketChannel)  # type: ignore[assignment]
    iopub_channel_class = Type(SlicedSocketChannel)  # type: ignore[assignment]
    stdin_channel_class = Type(SlicedSocketChannel)  # type: ignore[assignment]
    control_channel_class = Type(SlicedSocketChannel)  # type: ignore[assignment]


class IPCKernelManager(AsyncKernelManager):
    """An async kernel manager on IPC transport, its sockets in a private temporary folder
    (short paths: Unix socket names are limited to ~100 bytes), removed with the kernel."""

    transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)  # type: ignore[assignment]
    client_class = DottedObjectName("lib.notebook_runner.StudyKernelClient")
    client_factory = Type(StudyKernelClient)  # type: ignore[assignment]

    def _ip_default(self) -> str:
        if self.transport != "ipc":
            return super()._ip_default()
        self._socket_dir = tempfile.mkdtemp(prefix="lvs-kernel-")
        return os.path.join(self._socket_dir, "k")

    async def cleanup_resources(self, restart: bool = False) -> None:  # type: ignore[override]
        await super().cleanup_resources(restart=restart)
        socket_dir = getattr(self, "_socket_dir", None)
        if socket_dir and not restart:
            shutil.rmtree(socket_dir, ignore_errors=True)


# ---- progress reporting ----------------------------------------------------------------------------
def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class ProgressReporter:
    """Prints where a notebook run is: a permanent line per finished cell, and a status line
    (the running cell, its elapsed time, the latest progress bar) that a background thread
    redraws in place every second on a terminal, or prints every ``heartbeat_s`` seconds to a
    log or pipe."""

    name: str
    stream: IO[str] = field(default_factory=lambda: sys.stdout)
    heartbeat_s: float = 20.0
    live: bool | None = None  # None: in place when ``stream`` is a terminal
    cell: str = "starting the kernel"
    bar: str = ""
    _cell_started: float = field(default_factory=time.monotonic)
    _last_print: float = field(default_factory=time.monotonic)
    _status_shown: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        if self.live is None:
            self.live = bool(getattr(self.stream, "isatty", lambda: False)())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"progress {self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._clear_status()

    def line(self, text: str) -> None:
        """Print a permanent line (the status line, if shown, is redrawn below it)."""
        with self._lock:
            self._clear_status()
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last_print = time.monotonic()

    def cell_started(self, label: str) -> None:
        with self._lock:
            self.cell, self.bar, self._cell_started = label, "", time.monotonic()

    def cell_finished(self, label: str, seconds: float, status: str = "") -> None:
        self.line(f"[study] {self.name} {label} {seconds:6.1f} s{(' ' + status) if status else ''}")
        with self._lock:
            self.cell, self.bar = "between cells", ""

    def set_bar(self, text: str) -> None:
        with self._lock:
            self.bar = text

    def status(self) -> str:
        elapsed = _clock(time.monotonic() - self._cell_started)
        return f"[study] {self.name} {self.cell} (running {elapsed})" + (f" | {self.bar}" if self.bar else "")

    def _clear_status(self) -> None:
        if self._status_shown:
            self.stream.write("\r\x1b[2K")
            self._status_shown = False

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                if self.live:
                    width = shutil.get_terminal_size((120, 20)).columns - 1
                    self.stream.write("\r\x1b[2K" + self.status()[:width])
                    self.stream.flush()
                    self._status_shown = True
                elif time.monotonic() - self._last_print >= self.heartbeat_s:
                    self.stream.write(self.status() + "\n")
                    self.stream.flush()
                    self._last_print = time.monotonic()


# ---- tqdm widgets seen through their comm messages -------------------------------------------------
_PROGRESS_MODELS = {"FloatProgressModel", "IntProgressModel"}
_MODEL_REF = re.compile(r"IPY_MODEL_([0-9a-f]{32})")


def _widget_text(value: Any) -> str:
    return html.unescape(str(value or "")).replace("\u2007", " ").strip()


def tqdm_boxes(states: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str, str]]:
    """The tqdm.notebook bars among widget ``states``: box id -> (left text, bar, right text) ids.

    tqdm draws a bar as an HBox of an HTML (description and percentage), a Float/IntProgress and
    an HTML (counts, times and rate)."""
    boxes = {}
    for model_id, state in states.items():
        children = state.get("children") if state.get("_model_name") == "HBoxModel" else None
        if not children or len(children) != 3:
            continue
        ids = [str(c).removeprefix("IPY_MODEL_") for c in children]
        names = [states.get(i, {}).get("_model_name") for i in ids]
        if names[0] == "HTMLModel" and names[1] in _PROGRESS_MODELS and names[2] == "HTMLModel":
            boxes[model_id] = (ids[0], ids[1], ids[2])
    return boxes


def tqdm_text(states: dict[str, dict[str, Any]], parts: tuple[str, str, str]) -> str:
    """A tqdm bar's current line, e.g. ``encode: 100% 1342/1342 [04:12<00:00, 5.3video/s]``."""
    left, _, right = (states.get(i, {}).get("value") for i in parts)
    return " ".join(t for t in (_widget_text(left), _widget_text(right)) if t)


# ---- the notebook client ---------------------------------------------------------------------------
class StudyNotebookClient(PapermillNotebookClient):
    """papermill's client with limits, progress lines, bounded polls and tidy widget outputs."""

    kernel_manager_class = Type(IPCKernelManager, config=True)  # type: ignore[assignment]

    def __init__(self, nb_man: Any, *, reporter: ProgressReporter, limits: RunLimits,
                 kernel_log: str | os.PathLike[str] | None = None, **kw: Any) -> None:
        super().__init__(nb_man, **kw)
        self.reporter = reporter
        self.kernel_log = kernel_log
        self.cell_timeout_s = float(limits.cell_timeout_s)
        self.notebook_deadline = time.monotonic() + float(limits.notebook_timeout_s)
        self.notebook_timeout_s = float(limits.notebook_timeout_s)
        self.timeout_func = self._cell_timeout
        self.interrupt_on_timeout = True
        self.coalesce_streams = True  # one stream output per cell and name, \r-overwritten text resolved
        self._closed_comms: set[str] = set()
        self._bars: dict[str, tuple[str, str, str]] = {}
        self._limit_hit: str | None = None
        self._limit = ""
        self._label = ""

    def _cell_timeout(self, cell: NotebookNode) -> int:
        remaining = self.notebook_deadline - time.monotonic()
        if remaining < self.cell_timeout_s:
            self._limit = f"the notebook's wall limit of {self.notebook_timeout_s:.0f} s (runner.notebook_timeout_s)"
            return max(1, int(remaining))
        self._limit = f"the cell timeout of {self.cell_timeout_s:.0f} s (runner.cell_timeout_s)"
        return max(1, int(self.cell_timeout_s))

    async def _async_handle_timeout(self, timeout: int, cell: NotebookNode | None = None) -> None | dict[str, Any]:
        self._limit_hit = f"{self._label} ran past {self._limit}"
        self.reporter.line(f"[study] {self.reporter.name} {self._limit_hit}: interrupting the kernel")
        self.error_on_timeout = {"ename": TIMEOUT_ENAME, "evalue": self._limit_hit, "traceback": []}
        return await super()._async_handle_timeout(timeout, cell)

    def papermill_execute_cells(self) -> None:
        code_cells = [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code" and c.source.strip()]
        for index, cell in enumerate(self.nb.cells):
            if index not in code_cells:  # markdown or empty: nothing runs
                self.nb_man.cell_start(cell, index)
                self.execute_cell(cell, index)
                self.nb_man.cell_complete(self.nb.cells[index], cell_index=index)
                continue
            first_line = next((line for line in cell.source.splitlines() if line.strip()), "").strip()
            self._label = f"cell {code_cells.index(index) + 1}/{len(code_cells)}"
            self.reporter.cell_started(f"{self._label} {first_line[:50]}")
            started, status = time.monotonic(), ""
            try:
                self.nb_man.cell_start(cell, index)
                self.execute_cell(cell, index)
            except CellExecutionError as ex:
                status = "FAILED"
                if self._limit_hit:
                    status = "TIMED OUT"
                    self._record_error(self.nb.cells[index], TIMEOUT_ENAME, self._limit_hit)
                self.nb_man.cell_exception(self.nb.cells[index], cell_index=index, exception=ex)
                break
            except CellTimeoutError as ex:  # the kernel did not answer the interrupt in time
                status = "TIMED OUT"
                self._limit_hit = self._limit_hit or f"{self._label}: {ex}"
                self._record_error(self.nb.cells[index], TIMEOUT_ENAME, self._limit_hit)
                self.nb_man.cell_exception(self.nb.cells[index], cell_index=index, exception=ex)
                break
            except DeadKernelError as ex:
                status = "KERNEL DIED"
                self._record_error(self.nb.cells[index], DEAD_KERNEL_ENAME,
                                   f"the kernel died during {self._label} (out of memory?): {ex}")
                self.nb_man.cell_exception(self.nb.cells[index], cell_index=index, exception=ex)
                break
            finally:
                self.nb_man.cell_complete(self.nb.cells[index], cell_index=index)
                self.reporter.cell_finished(f"{self._label} {first_line[:70]}", time.monotonic() - started, status)

    def _record_error(self, cell: NotebookNode, ename: str, message: str) -> None:
        """Put a named error output first in ``cell`` (papermill reports the first error it finds)."""
        interrupted = " The kernel was interrupted; the traceback below (if any) shows where it was."
        note = interrupted if ename == TIMEOUT_ENAME else ""
        error = new_output("error", ename=ename, evalue=message, traceback=[f"{ename}: {message}.{note}"])
        cell.outputs.insert(0, error)

    def handle_comm_msg(self, outs: list[NotebookNode], msg: dict[str, Any], cell_index: int) -> None:
        super().handle_comm_msg(outs, msg, cell_index)
        comm_id = msg["content"].get("comm_id")
        if msg["msg_type"] == "comm_close":
            self._closed_comms.add(comm_id)
            return
        state = self.widget_state.get(comm_id, {})
        if state.get("_model_name") == "HBoxModel" and comm_id not in self._bars:
            self._bars.update(tqdm_boxes(self.widget_state))
        for parts in self._bars.values():
            if comm_id in parts:
                self.reporter.set_bar(tqdm_text(self.widget_state, parts))
                break

    def tidy_widget_outputs(self) -> None:
        """Final text for finished bars, no closed widgets, and only the state of widgets still shown."""
        self._bars.update(tqdm_boxes(self.widget_state))
        for cell in self.nb.cells:
            kept = []
            for output in cell.get("outputs", []):
                displayed = output.get("output_type") in ("display_data", "execute_result")
                view = output.get("data", {}).get(WIDGET_VIEW) if displayed else None
                model_id = view.get("model_id") if isinstance(view, dict) else None
                if model_id in self._closed_comms:
                    continue
                if model_id in self._bars:
                    output["data"]["text/plain"] = tqdm_text(self.widget_state, self._bars[model_id])
                kept.append(output)
            if "outputs" in cell:
                cell["outputs"] = kept
        shown = {output["data"][WIDGET_VIEW]["model_id"] for cell in self.nb.cells for output in cell.get("outputs", [])
                 if isinstance(output.get("data", {}).get(WIDGET_VIEW), dict)}
        reachable, todo = set(), list(shown)
        while todo:
            model_id = todo.pop()
            if model_id in reachable or model_id not in self.widget_state:
                continue
            reachable.add(model_id)
            blob = json.dumps(self.widget_state[model_id])
            todo += _MODEL_REF.findall(blob) + re.findall(r'"model_id": "([0-9a-f]{32})"', blob)
        for model_id in list(self.widget_state):
            if model_id not in reachable or model_id in self._closed_comms:
                del self.widget_state[model_id]

    def execute(self, **kwargs: Any) -> NotebookNode:
        """Run every cell; the kernel's own output (its log, messages at shutdown) goes to
        ``kernel_log`` when given, not to this process's terminal."""
        self.reset_execution_trackers()
        log = open(self.kernel_log, "ab") if self.kernel_log else None  # noqa: SIM115 - closed below
        try:
            if log is not None:
                kwargs.update(stdout=log, stderr=log)
            with self.setup_kernel(**kwargs):
                try:
                    self.papermill_execute_cells()
                    info_msg = self.wait_for_reply(self.kc.kernel_info())
                    if info_msg is not None:
                        self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
                finally:
                    self.tidy_widget_outputs()
                    self.set_widgets_metadata()
        finally:
            if log is not None:
                log.close()
        return self.nb


class StudyEngine(NBClientEngine):
    """The papermill engine that runs :class:`StudyNotebookClient`."""

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, log_output: bool = False, stdout_file: Any = None,
                                 stderr_file: Any = None, start_timeout: int = 60, execution_timeout: Any = None,
                                 **kwargs: Any) -> NotebookNode:
        kwargs.pop("input_path", None)
        client = StudyNotebookClient(nb_man, kernel_name=kernel_name, startup_timeout=start_timeout,
                                     log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file, **kwargs)
        nb_man.study_client = client
        return client.execute()


papermill_engines.register(ENGINE_NAME, StudyEngine)


@dataclass(frozen=True)
class RunLimits:
    """The bounds of one notebook run, in seconds: any one cell, and all cells together."""

    cell_timeout_s: float
    notebook_timeout_s: float

    def __post_init__(self) -> None:
        for name in ("cell_timeout_s", "notebook_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True)
class ConsoleSpec:
    """Where and how progress is printed: ``stream`` (None: stdout), a status line at least every
    ``heartbeat_s`` seconds when not drawn in place, ``live`` (None: in place on a terminal)."""

    stream: IO[str] | None = None
    heartbeat_s: float = 20.0
    live: bool | None = None


def execute_notebook(notebook: str | os.PathLike[str], output: str | os.PathLike[str], *, parameters: dict[str, Any],
                     name: str, limits: RunLimits, cwd: str | os.PathLike[str], kernel_name: str = "python3",
                     console: ConsoleSpec | None = None,
                     kernel_log: str | os.PathLike[str] | None = None) -> NotebookNode:
    """Execute ``notebook`` into ``output`` with the study's client (see the module docstring).

    Progress goes to ``console`` (stdout), the kernel's own output to ``kernel_log`` (or to this
    process's stderr). Raises :class:`NotebookTimeout` (the executed copy kept, the cell named)
    when one of ``limits`` is hit, ``papermill.PapermillExecutionError`` when a cell fails.
    """
    import papermill

    console = console or ConsoleSpec()
    reporter = ProgressReporter(name=name, stream=console.stream or sys.stdout, heartbeat_s=console.heartbeat_s,
                                live=console.live)
    reporter.start()
    try:
        return papermill.execute_notebook(
            os.fspath(notebook), os.fspath(output), parameters=parameters, engine_name=ENGINE_NAME,
            kernel_name=kernel_name, cwd=os.fspath(cwd), progress_bar=False, log_output=False,
            reporter=reporter, limits=limits, kernel_log=kernel_log)
    except papermill.PapermillExecutionError as err:
        if err.ename == TIMEOUT_ENAME:
            raise NotebookTimeout(None, err.evalue) from err
        raise
    finally:
        reporter.stop()
