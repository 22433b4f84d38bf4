"""The notebooks in a real browser: JupyterLab driven by Chromium through Playwright.

JupyterLab runs on 127.0.0.1 on a random port with a token, its settings, workspaces and runtime
files in the test's folder; Debian's ``chromium`` (``.ci/run`` installs it) is driven by the
``playwright`` package (no browser download). Notebooks 01 and 07 run at their smoke defaults in
copies (JupyterLab saves what it runs, and the committed notebooks stay clean): no error output,
the 01 scrubber shows another frame when its slider moves (and 01, saved, is copied into its run
directory with its widget state), the 07 view another picture when the video (or model) changes.
Then executed notebooks of the study runner are opened without a
kernel: every widget cell shows a picture and every progress bar reads 100 %. Screenshots go to
the test's folder.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lib.paths import NOTEBOOKS_DIR

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
RUN_TIMEOUT_MS = 600_000


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (`apt-get install chromium`; "
                    ".ci/run installs it when it runs as root or with sudo)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    return CHROMIUM


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A JupyterLab server on 127.0.0.1 (random port, token) serving a fresh folder."""
    root = tmp_path_factory.mktemp("lab")
    notification = root / ".settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True, exist_ok=True)
    # no news prompt over the page
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root / ".runtime"), "JUPYTER_CONFIG_DIR": str(root / ".config")}
    args = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--ServerApp.terminals_enabled=False", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
            f"--LabApp.user_settings_dir={root / '.settings'}", f"--LabApp.workspaces_dir={root / '.workspaces'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed at teardown
    server = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                log_tail = (root / "server.log").read_text()[-2000:]
                raise RuntimeError(f"JupyterLab exited ({server.returncode}): {log_tail}")
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield {"root": root, "base": base, "token": token}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def page(lab: dict[str, Any], chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(chromium), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        try:
            yield context.new_page()
        finally:
            context.close()


# ---- helpers ----------------------------------------------------------------------------------------
def _copy_notebook(name: str, root: Path, parameters: dict[str, Any]) -> str:
    """``notebooks/<name>.ipynb`` into the lab folder, with ``parameters`` injected as papermill does."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(NOTEBOOKS_DIR / f"{name}.ipynb"))
    if parameters:
        nb = parameterize_notebook(nb, parameters)
    nbformat.write(nb, root / f"{name}.ipynb")
    return f"{name}.ipynb"


def _open(page: Any, lab: dict[str, Any], path: str) -> None:
    """Open ``path`` alone (``reset``: no tabs restored from the last visit)."""
    page.goto(f"{lab['base']}/lab/tree/{path}?reset&token={lab['token']}")
    page.wait_for_function(f"""() => {{ const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
        return w && w.context && w.context.path === {json.dumps(path)} && w.context.isReady; }}""", timeout=120_000)


def _open_without_kernel(page: Any, lab: dict[str, Any], path: str) -> None:
    """Open ``path`` (a notebook naming no kernel) and answer JupyterLab's kernel question with No Kernel."""
    page.goto(f"{lab['base']}/lab/tree/{path}?reset&token={lab['token']}")
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=120_000)
    dialog.locator("select").select_option(label="No Kernel")
    dialog.get_by_role("button", name="Select").click()
    page.wait_for_function(f"""() => {{ const w = window.jupyterapp.shell.currentWidget;
        return w && w.context && w.context.path === {json.dumps(path)} && w.context.isReady
            && !w.sessionContext.session && w.sessionContext.kernelDisplayName === 'No Kernel'; }}""", timeout=60_000)


def _run_all(page: Any) -> None:
    page.wait_for_function("""() => { const s = window.jupyterapp.shell.currentWidget.sessionContext.session;
        return s && s.kernel && s.kernel.status === 'idle'; }""", timeout=120_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function("""() => { const nb = window.jupyterapp.shell.currentWidget;
        const cells = nb.content.model.cells;
        for (let i = 0; i < cells.length; i++) { const c = cells.get(i);
            if (c.type === 'code' && c.sharedModel.source.trim() && !c.executionCount) return false; }
        return nb.sessionContext.session.kernel.status === 'idle'; }""", timeout=RUN_TIMEOUT_MS, polling=1000)


def _outputs(page: Any) -> list[list[dict[str, Any]]]:
    return page.evaluate("""() => { const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
        const r = [];
        for (let i = 0; i < cells.length; i++) {
            const c = cells.get(i); r.push(c.type === 'code' ? c.outputs.toJSON() : []); }
        return r; }""")


def _errors(outputs: list[list[dict[str, Any]]]) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for cell in outputs for o in cell if o.get("output_type") == "error"]


def _widget_picture(page: Any, cell: Any) -> bytes:
    """The PNG bytes the widget's Output area shows in ``cell`` (a locator)."""
    image = cell.locator(".widget-output img").first
    image.wait_for(timeout=60_000)
    return base64.b64decode(image.get_attribute("src").split(",", 1)[1])


def _wait_for_new_picture(page: Any, cell: Any, before: bytes, what: str) -> bytes:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _widget_picture(page, cell)
        if now != before:
            return now
        page.wait_for_timeout(500)
    raise AssertionError(f"{what}: the shown picture did not change within 60 s")


def _widget_cell(page: Any) -> Any:
    cell = page.locator(".jp-CodeCell").filter(has=page.locator(".widget-output img")).first
    cell.scroll_into_view_if_needed()
    return cell


# ---- the test ---------------------------------------------------------------------------------------
def test_notebooks_work_in_jupyterlab_and_read_without_a_kernel(page: Any, lab: dict[str, Any], tiny_study: Path,
                                                                 study_vae: tuple[str, str], tmp_path: Path) -> None:
    vae_source, cache_name = study_vae
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # 01: run, then move the frame slider of the scrubber
    run_dir = tmp_path / "run_01"  # where a hand run's results (and its saved copy) go, instead of outputs/runs/adhoc
    overrides = {"vae_source": vae_source, "probe": "off"} if vae_source else {}
    _open(page, lab, _copy_notebook("01_reconstruction", lab["root"], {**overrides, "run_dir": str(run_dir)}))
    _run_all(page)
    assert not _errors(_outputs(page))
    scrubber = _widget_cell(page)
    before = _widget_picture(page, scrubber)
    handle = scrubber.locator(".widget-slider .noUi-handle").first  # the frame slider
    handle.focus()
    for _ in range(5):
        handle.press("ArrowRight")
    after = _wait_for_new_picture(page, scrubber, before, "01 scrubber")
    assert after[:8] == b"\x89PNG\r\n\x1a\n"
    scrubber.screenshot(path=str(shots / "01_reconstruction-scrubber.png"))
    # saved by hand, the notebook lands in its run directory, with its widgets' state (lib.lab)
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    copy = run_dir / "01_reconstruction.ipynb"
    deadline = time.monotonic() + 30
    while not copy.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert copy.is_file(), ("the saved notebook was not copied into its run directory: "
                            "is `python -m lib.lab install` done?")
    saved = json.loads(copy.read_text())
    assert any(c.get("outputs") for c in saved["cells"]) and "widgets" in saved["metadata"]

    # 07: run on the tiny study, then pick another test video (and model, when there are several)
    _open(page, lab, _copy_notebook("07_compare", lab["root"], {"study_dir": str(tiny_study), "cache_name": cache_name,
                                                             "run_dir": str(tmp_path / "run_07")}))
    _run_all(page)
    assert not _errors(_outputs(page))
    view = _widget_cell(page)
    before = _widget_picture(page, view)
    models, videos = view.locator(".widget-dropdown select").all()[:2]
    videos.select_option(index=1)
    before = _wait_for_new_picture(page, view, before, "07 test-video choice")
    if models.locator("option").count() > 1:
        models.select_option(index=1)
        _wait_for_new_picture(page, view, before, "07 model choice")
    view.screenshot(path=str(shots / "07_compare-view.png"))

    # executed notebooks of the runner, opened without a kernel: pictures for widgets, bars at 100 %
    for step in ("03_lstm", "07_compare"):
        name = f"executed_{step}.ipynb"
        nb = json.loads((tiny_study / step / f"{step}.ipynb").read_text())
        for key in ("kernelspec", "language_info"):  # naming none, JupyterLab asks which kernel to start
            nb["metadata"].pop(key, None)
        (lab["root"] / name).write_text(json.dumps(nb))
        _open_without_kernel(page, lab, name)
        cells = page.locator(".jp-Notebook .jp-Cell")
        checked = 0
        for index, cell in enumerate(nb["cells"]):
            for output in cell.get("outputs", []):
                if WIDGET_VIEW not in output.get("data", {}):
                    continue
                shown = cells.nth(index)
                shown.scroll_into_view_if_needed()
                text = "".join(output["data"].get("text/plain", ""))
                if "image/png" in output["data"]:
                    shown.locator(".jp-OutputArea-output img").first.wait_for(timeout=30_000)
                else:  # a progress bar, as its final line
                    shown_text = shown.locator(".jp-OutputArea").inner_text()
                    assert "100%" in text and "100%" in shown_text, f"{step} cell {index}: {text!r}"
                shown.screenshot(path=str(shots / f"{name}-cell{index}.png"))
                checked += 1
        assert checked, f"{step}: no widget output to check"
