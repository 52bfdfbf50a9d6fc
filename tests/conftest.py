"""Shared fixtures: one real FaultServer on loopback per test module; every notebook run
once per session (``notebooks``)."""

from __future__ import annotations

import pathlib

import pytest

import kit


@pytest.fixture(scope="module")
def server():
    with kit.FaultServer() as srv:
        yield srv


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory):
    """A CA made at test time (trustme) and its PEM file: (ca, path)."""
    import trustme

    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture(scope="module")
def tls_server(tls_ca):
    """A FaultServer serving HTTPS with a certificate from ``tls_ca``: a provider stand-in."""
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca[0].issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    with kit.FaultServer(tls=ctx) as srv:
        yield srv


class Notebooks:
    """Every notebook run once per session, with the suite's parameters (``labrun.PARAMETERS``).

    Where chromium is here, all of them run in one JupyterLab session as a person runs them
    (Run All, save; ``lab()``), and the tests judge the saved files; otherwise each runs in
    a fresh kernel (nbclient) when a test first asks for it. ``run_dir`` is notebook 04's
    bundle, ``conclusions`` notebook 05's checked conclusions (JSON).
    """

    def __init__(self, tmp: pathlib.Path) -> None:
        self.tmp = tmp
        self.run_dir = tmp / "runs" / "04_timeout_sweep"
        self.conclusions = tmp / "conclusions.json"
        self._lab = None
        self._lab_error: BaseException | None = None
        self._ran: dict = {}

    def parameters(self) -> dict[str, str]:
        from labrun import PARAMETERS

        p = dict(PARAMETERS)
        p["04_timeout_sweep.ipynb"] += f"\nRUN_DIR = {str(self.run_dir)!r}"
        p["05_postmortem_no_chunks.ipynb"] += f"\nCONCLUSIONS_PATH = {str(self.conclusions)!r}"
        return p

    def lab(self):
        """The one JupyterLab run of every notebook (skipped, loudly, without chromium)."""
        from labrun import browser_missing, run_every_notebook

        reason = browser_missing()
        if reason:
            pytest.skip(reason)
        if self._lab_error is not None:
            raise self._lab_error
        if self._lab is None:
            from test_browser import CHARTS, charts_notebook, charts_rows, explorer_steps

            try:
                self._lab = run_every_notebook(
                    self.tmp / "lab",
                    self.parameters(),
                    during={"01_explorer.ipynb": explorer_steps, CHARTS: charts_rows},
                    extra={CHARTS: charts_notebook()},
                )
            except BaseException as exc:
                self._lab_error = exc
                raise
        return self._lab

    def run(self, name: str):
        """The notebook ``name`` as run this session (outputs included)."""
        from labrun import NOTEBOOKS, browser_missing

        if browser_missing() is None:
            return self.lab().saved[name]
        if name not in self._ran:
            from test_notebooks import execute

            self._ran[name] = execute(NOTEBOOKS / name, self.parameters().get(name), timeout=400)
        return self._ran[name]


@pytest.fixture(scope="session")
def notebooks(tmp_path_factory) -> Notebooks:
    return Notebooks(tmp_path_factory.mktemp("notebooks"))


def pytest_terminal_summary(terminalreporter):
    """Say loudly, at the end of the run, that the browser test did not run."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "test_browser" in r.nodeid]
    if skipped:
        reason = skipped[0].longrepr[2] if isinstance(skipped[0].longrepr, tuple) else str(skipped[0].longrepr)
        terminalreporter.write_sep("!", "BROWSER TEST SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"{len(skipped)} browser test(s) did not run: {reason}", red=True)
