"""JupyterLab and Debian's chromium, driven as a person would (Playwright): the helpers of
``tests/test_browser.py`` and the suite's one run of every notebook (``conftest.notebooks``).

:func:`run_every_notebook` makes a git clone-alike of this repository in a temp dir
(the working copy's notebooks, each with the suite's parameters committed as an extra cell
after its ``parameters`` cell, the ``data`` folder, ``.gitattributes``, the nbstripout filter
set up by ``make git-filter``), starts JupyterLab there as ``make lab`` does (its flags, read
from the Makefile, and its settings), and for every notebook: opens it, Run All, waits until
the kernel is idle, saves (Ctrl+S), shuts the kernel down. The saved files are what the
tests judge; ``git status`` of the clone says whether saving outputs reached git.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHROMIUM = (
    os.environ.get("KIT_CHROMIUM")
    or shutil.which("chromium")
    or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
)


def browser_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    if CHROMIUM is None:
        return "chromium not found: install it (README, 'Two commands') or set KIT_CHROMIUM"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (make test installs the dev extras)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_lab_flags() -> list[str]:
    """The extra flags ``make lab`` gives ``jupyter lab`` (LAB_FLAGS in the Makefile)."""
    text = (ROOT / "Makefile").read_text()
    found = re.search(r"^LAB_FLAGS\s*:?=\s*(.*)$", text, re.M)
    assert found, "the Makefile has no LAB_FLAGS line"
    return found.group(1).split()


@contextlib.contextmanager
def jupyterlab(tmp_path: pathlib.Path, root: pathlib.Path, *extra: str, cwd: pathlib.Path | None = None):
    """JupyterLab on a free port serving ``root``, configured as ``make lab`` does; yields (base url, token)."""
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
    ):
        env[var] = str(tmp_path / sub)
    # the defaults `make lab` installs (no news pop-up, widget state saved), then a user setting:
    # render every cell (no windowing: the explorer must stay in the DOM when the notebook scrolls)
    overrides = tmp_path / "config" / "labconfig" / "default_setting_overrides.json"
    overrides.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "etc" / "jupyterlab-overrides.json", overrides)
    settings = tmp_path / "settings"
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    f = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"windowingMode": "none"}))
    jupyter = pathlib.Path(sys.executable).parent / "jupyter"
    log_path = tmp_path / "lab.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            str(jupyter),
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *extra,
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),  # CI containers run as root
        ],
        cwd=cwd or root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.3)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def chromium():
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


def open_and_run_all(page, base: str, token: str, name: str, workspace: str | None = None) -> None:
    """Open ``name`` (in its own workspace, so no earlier tab reopens), accept the kernel, Run All."""
    where = f"{base}/lab/workspaces/{workspace}/tree/{name}" if workspace else f"{base}/lab/tree/{name}"
    page.goto(f"{where}?token={token}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel", timeout=90_000)
    # JupyterLab may ask which kernel to use, sometimes seconds later (it preselects python3)
    deadline = time.monotonic() + 120
    idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    while time.monotonic() < deadline:
        dialog = page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count():
            dialog.first.click()
        elif idle.count():
            page.wait_for_timeout(500)  # a late dialog still gets its chance
            if not page.locator(".jp-Dialog .jp-mod-accept").count():
                break
        page.wait_for_timeout(200)
    else:
        raise AssertionError(f"{name}: the notebook's kernel did not start")
    started = (
        "() => Array.from(document.querySelectorAll('.jp-InputPrompt')).some(e => /\\[[*0-9]/.test(e.textContent))"
    )
    for _ in range(4):  # a kernel still starting (or a late kernel dialog) can swallow the first "Run All"
        for dialog in page.locator(".jp-Dialog .jp-mod-accept").all():
            dialog.click()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        try:
            page.wait_for_function(started, timeout=20_000)
            return
        except Exception:
            continue
    raise AssertionError(f"{name}: Run All Cells did not start the notebook")


# every code cell has run (a number in its prompt) or was never reached, none is running,
# and the kernel is idle
_SETTLED_JS = """() => {
    const prompts = Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt'))
        .map(e => e.textContent);
    const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
    return Boolean(idle) && prompts.length > 0 && !prompts.some(t => t.includes('*'))
        && prompts.some(t => /[0-9]/.test(t));
}"""


def wait_until_run(page, name: str, timeout: float) -> None:
    """Until the notebook has finished (settled for 1.5 s in a row: a queued cell shows [*] too)."""
    deadline, since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if page.evaluate(_SETTLED_JS):
            since = since or time.monotonic()
            if time.monotonic() - since >= 1.5:
                return
        else:
            since = None
        page.wait_for_timeout(250)
    raise AssertionError(f"{name}: still running after {timeout:.0f} s")


def save(page, path: pathlib.Path, name: str) -> None:
    """Ctrl+S, as a person saves; returns when the file on disk has the run's outputs."""
    before = path.stat().st_mtime_ns
    page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.stat().st_mtime_ns != before and not page.locator(".jp-mod-current.jp-mod-dirty").count():
            nb = nbformat.read(path, as_version=4)
            if any(c.get("execution_count") for c in nb.cells if c.cell_type == "code"):
                return
        page.wait_for_timeout(250)
    raise AssertionError(f"{name}: saving did not write the outputs")


def shut_down_kernels(base: str, token: str) -> None:
    """Shut down every kernel session (REST API), as File > Shut Down would."""
    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions", headers=headers), timeout=30) as r:
        sessions = json.load(r)
    for s in sessions:
        req = urllib.request.Request(f"{base}/api/sessions/{s['id']}", method="DELETE", headers=headers)
        with contextlib.suppress(OSError):
            urllib.request.urlopen(req, timeout=30).close()


def errors_of(nb: nbformat.NotebookNode) -> list[str]:
    """The error outputs of a run notebook, as ``Name: value`` lines."""
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


def text_of(nb: nbformat.NotebookNode) -> str:
    """Every stream and text/plain/text/html output of a run notebook, joined."""
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", ""))
            data = o.get("data", {})
            out.append(data.get("text/plain", ""))
            out.append(data.get("text/html", ""))
    return "\n".join(out)


def with_parameters(path: pathlib.Path, overrides: str | None) -> nbformat.NotebookNode:
    """The notebook with ``overrides`` as a cell after its ``parameters`` cell (papermill's way)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if overrides:
        idx = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
        assert idx is not None, f"{path.name} has no cell tagged 'parameters'"
        nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(overrides, metadata={"tags": ["injected-parameters"]}))
    return nb


def _git(repo: pathlib.Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def clone_like(
    dest: pathlib.Path, overrides: dict[str, str], extra: dict[str, nbformat.NotebookNode] | None = None
) -> pathlib.Path:
    """A git repository like a fresh clone: the working copy's notebooks (with ``overrides``
    committed as their injected-parameters cells) and any ``extra`` ones, ``data``,
    ``.gitattributes``, ``.gitignore``, the nbstripout filter as ``make git-filter`` sets it
    up. Returns its root."""
    dest.mkdir(parents=True)
    (dest / "notebooks").mkdir()
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = with_parameters(path, overrides.get(path.name))
        nbformat.write(nb, dest / "notebooks" / path.name)
    for name, nb in (extra or {}).items():
        nbformat.write(nb, dest / "notebooks" / name)
    shutil.copytree(ROOT / "data", dest / "data", ignore=shutil.ignore_patterns("runs"))
    for f in (".gitattributes", ".gitignore"):
        shutil.copy(ROOT / f, dest / f)
    _git(dest, "init", "-q")
    _git(dest, "config", "user.email", "lab@example.invalid")
    _git(dest, "config", "user.name", "lab")
    venv = pathlib.Path(sys.executable).parent.parent
    done = subprocess.run(
        ["make", "-s", "-C", str(dest), "-f", str(ROOT / "Makefile"), "git-filter", f"VENV={venv}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "as cloned")
    return dest


@dataclass
class LabRun:
    """What one JupyterLab session of every notebook left: the saved notebooks, git's view."""

    repo: pathlib.Path
    saved: dict[str, nbformat.NotebookNode] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    git_status: str = ""
    checks: dict[str, BaseException | None] = field(default_factory=dict)


def run_every_notebook(
    tmp_path: pathlib.Path,
    overrides: dict[str, str],
    *,
    during: dict[str, Callable] | None = None,
    timeout: float = 900,
    only: list[str] | None = None,
    extra: dict[str, nbformat.NotebookNode] | None = None,
) -> LabRun:
    """Every notebook of the working copy (then the ``extra`` ones), in order, run and saved in JupyterLab.

    ``during[name](page)`` runs after that notebook finished and before it is saved, with
    its kernel still alive (a person trying the explorer); what it raises is kept in
    ``checks[name]`` (None: it passed), so one failed check does not stop the other notebooks.
    """
    repo = clone_like(tmp_path / "clone", overrides, extra)
    run = LabRun(repo)
    with (
        jupyterlab(tmp_path / "lab", repo / "notebooks", *make_lab_flags(), cwd=repo) as (base, token),
        chromium() as browser,
    ):
        paths = [repo / "notebooks" / p.name for p in sorted(NOTEBOOKS.glob("*.ipynb"))]
        for i, path in enumerate(paths + [repo / "notebooks" / name for name in extra or {}]):
            if only and path.name not in only:
                continue
            t0 = time.monotonic()
            phases = run.phases.setdefault(path.name, {})

            def lap(what: str, t0=t0, phases=phases) -> None:
                phases[what] = round(time.monotonic() - t0 - sum(phases.values()), 1)

            page = browser.new_page(viewport={"width": 1500, "height": 1400})
            try:
                open_and_run_all(page, base, token, path.name, workspace=f"w{i}")
                lap("open")
                wait_until_run(page, path.name, timeout)
                lap("run")
                if during and path.name in during:
                    try:
                        during[path.name](page)
                        run.checks[path.name] = None
                    except Exception as exc:  # kept: reported by the test that asked for it
                        run.checks[path.name] = exc
                    wait_until_run(page, path.name, 120)
                save(page, path, path.name)
                lap("save")
            finally:
                shot = os.environ.get("KIT_SCREENSHOT_DIR")
                if shot:
                    with contextlib.suppress(Exception):
                        page.screenshot(path=str(pathlib.Path(shot) / f"lab-{path.stem}.png"), full_page=True)
                page.close()
                shut_down_kernels(base, token)
            lap("close")
            run.saved[path.name] = nbformat.read(path, as_version=4)
            run.seconds[path.name] = time.monotonic() - t0
    run.git_status = _git(repo, "status", "--porcelain")
    return run


# The suite's parameters per notebook: a cell after each notebook's `parameters` cell
# (only what keeps CI fast; every notebook tells the same story with them).
PARAMETERS: dict[str, str] = {
    "00_quickstart.ipynb": "EVENTS = 10",
    "01_explorer.ipynb": "FIRST_BYTE_DELAY = 0.5",
    "02_network_conditions.ipynb": (
        "EVENTS, GAP, LATENCY, JITTER = 15, 0.02, 0.1, 0.02\nBANDWIDTH, STALL_AFTER, STALL_FOR = '4KB/s', '1KB', 0.5"
    ),
    # fewer faults, the incident-era Node SDK only
    "03_real_clients.ipynb": (
        'SCENARIOS = ["empty_200", "headers_then_close", "overloaded_529"]\nNODE_CLIENTS = ["anthropic-node@0.39"]\n'
        'PY_CLIENTS = ["anthropic-python", "openai-python:stream"]\nCLI_CLIENTS = []'
    ),
    "04_timeout_sweep.ipynb": "TRIALS = 3\nLATENCIES = [0.0, 0.6]",
    "05_postmortem_no_chunks.ipynb": (
        "TRIALS = 20\nNET_STALL = 2.0\nCLI_CLIENTS = ()\nPY_CLIENTS = ('anthropic-python', 'openai-python')"
    ),
    "06_your_traces.ipynb": "TOP = 2",
    "07_record_and_replay.ipynb": "EVENTS, STALL_FOR, SDK_TIMEOUT = 20, 0.8, 0.4",
}
